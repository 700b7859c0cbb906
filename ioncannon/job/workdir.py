"""Find, create and list jobs in a work dir."""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ioncannon.job.fsio import StateFileError
from ioncannon.job.lock import runner_pid
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, load_spec, save_spec, slugify
from ioncannon.job.state import JobState, read_state


class WorkdirError(Exception):
    """The work dir can't be used; the message says what to do."""


@dataclass
class JobSummary:
    name: str
    paths: JobPaths
    spec: JobSpec | None
    state: JobState
    alive: bool
    problem: str = ""  # why job.json could not be read, if it could not


def default_workdir() -> Path:
    """/workspace/ioncannon on rented boxes (the persistent disk), else the user's data dir."""
    env = os.environ.get("IONCANNON_WORKDIR")
    if env:
        return Path(env).expanduser()
    if Path("/workspace").is_dir() and os.access("/workspace", os.W_OK):
        return Path("/workspace/ioncannon")
    from platformdirs import user_data_path

    return user_data_path("ioncannon", appauthor=False)


def ensure_workdir(workdir: str | Path) -> Path:
    workdir = Path(workdir).expanduser()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise WorkdirError(
            f"Work dir {workdir} is not writable ({exc.strerror}). Pick another with --workdir DIR."
        ) from exc
    return workdir


def overlaps(a: str | Path, b: str | Path) -> bool:
    """Whether two folders are one, or one lies inside the other, once symlinks are followed."""
    ra, rb = Path(a).expanduser().resolve(), Path(b).expanduser().resolve()
    return ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra)


def overlap_problem(job_root: str | Path, photos_dir: str | Path) -> str | None:
    """One sentence when a job folder and the photo folder overlap (the job would write among the photos)."""
    if not overlaps(job_root, photos_dir):
        return None
    return (f"the job folder {job_root} and the photo folder {photos_dir} overlap (one is, or lies inside, the "
            "other), and the photo folder is never changed: keep the photos in a folder of their own outside the "
            "job, or pick another job name or --workdir.")


def new_job_name(workdir: str | Path, identifier: str) -> str:
    base = f"{slugify(identifier)[:40].strip('-') or 'job'}-{time.strftime('%Y%m%d-%H%M')}"
    name, n = base, 2
    while (Path(workdir) / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def create_job(workdir: str | Path, spec: JobSpec) -> JobPaths:
    """Claim the job's folder inside the work dir and write job.json; WorkdirError if the name is taken."""
    base = ensure_workdir(workdir).resolve()
    root = base / spec.name
    # the name is checked at the door; this is the last guard that the folder really is a child of the work dir
    if root.parent != base or root.is_symlink() or not root.resolve().is_relative_to(base):
        raise WorkdirError(f"The job name {spec.name!r} would leave the work dir {base}: pick a plain name.")
    paths = JobPaths(root)
    problem = overlap_problem(root, spec.photos_dir)
    if problem:
        raise WorkdirError(problem[0].upper() + problem[1:])
    try:
        # exclusive: of two commands creating one name at once exactly one wins, and a folder that is already
        # there (the person's photos copied to the work dir, a file) is never taken over
        root.mkdir(mode=0o700)
    except FileExistsError:
        for _ in range(10):  # a job another command is making this moment gets its .ioncannon in a blink
            if (paths.meta.is_dir() and not paths.meta.is_symlink()) or root.is_symlink() or not root.is_dir():
                break
            time.sleep(0.05)
        raise WorkdirError(_taken(root, base)) from None
    except OSError as exc:
        raise WorkdirError(f"Can't make the job folder {root} ({exc.strerror}): pick another --workdir.") from exc
    try:
        paths.ensure()
        save_spec(paths, spec)
    except OSError as exc:
        # nothing half-made may stay behind to take the name or show as a damaged job
        shutil.rmtree(root, ignore_errors=True)
        raise WorkdirError(f"Can't write the job into {base} ({exc.strerror or exc}): "
                           + ("free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                              else "check the work dir") + ", then run the command again.") from exc
    return paths


def _taken(root: Path, base: Path) -> str:
    """Why the job folder `root` can't be made: a job of ours (or one being made now), or something else."""
    meta = JobPaths(root).meta
    if meta.is_dir() and not meta.is_symlink():
        return (f"A job named {root.name!r} already exists in {base}: resume it with `ioncannon resume {root.name}`, "
                "or give the new job another name.")
    return (f"{root} is already there and is not a job: give the job another name (or move that "
            f"{'folder' if root.is_dir() else 'file'} out of the work dir).")


def name_taken(workdir: str | Path, name: str) -> str | None:
    """The sentence create_job would say when `name` is taken, asked before slower checks; None when it is free."""
    base = Path(workdir).expanduser().resolve()
    root = base / name
    return _taken(root, base) if root.exists() or root.is_symlink() else None


def list_jobs(workdir: str | Path) -> list[JobSummary]:
    """Every job in the work dir, newest first."""
    root = Path(workdir)
    if not root.is_dir():
        return []
    jobs = [summarise(JobPaths(child)) for child in root.iterdir() if JobPaths(child).job_file.exists()]
    jobs.sort(key=lambda j: j.paths.job_file.stat().st_mtime, reverse=True)
    return jobs


def summarise(paths: JobPaths) -> JobSummary:
    """One job's name, spec (None with the reason when job.json can't be read), state and whether it runs."""
    spec, problem = None, ""
    try:
        spec = load_spec(paths)
    except StateFileError as exc:
        problem = str(exc)
    return JobSummary(paths.root.name, paths, spec, read_state(paths), runner_pid(paths) is not None, problem)


def find_unfinished(workdir: str | Path, jobs: list[JobSummary] | None = None) -> JobSummary | None:
    """The newest job not yet finished (from `jobs` when the caller already listed them)."""
    for job in list_jobs(workdir) if jobs is None else jobs:
        if not job.state.finished and job.spec is not None:
            return job
    return None


def find_job(workdir: str | Path, name: str | None) -> JobSummary | None:
    """A job by name, or the newest one when no name is given."""
    jobs = list_jobs(workdir)
    if name is None:
        return jobs[0] if jobs else None
    return next((j for j in jobs if j.name == name), None)


ARCHIVE_DIR = "archive"  # set-aside jobs live here, out of every list; a job name always ends in a date, never this


def set_aside_refusal(job: JobSummary) -> str:
    """Why this job can't be archived or deleted now ("" when it can): never a job whose runner works."""
    if runner_pid(job.paths) is not None:
        return f"Job {job.name} is running: stop it first (`ioncannon stop {job.name}`)."
    return ""


def archive_job(workdir: str | Path, job: JobSummary) -> Path:
    """Move a job out of the way into <workdir>/archive/ (kept whole, listed nowhere); WorkdirError if it runs."""
    refusal = set_aside_refusal(job)
    if refusal:
        raise WorkdirError(refusal)
    shelf = Path(workdir) / ARCHIVE_DIR
    shelf.mkdir(mode=0o700, exist_ok=True)
    target, n = shelf / job.name, 2
    while target.exists():
        target, n = shelf / f"{job.name}-{n}", n + 1
    try:
        os.replace(job.paths.root, target)
    except OSError as exc:
        raise WorkdirError(f"Job {job.name} could not be moved to {shelf} ({exc.strerror}).") from exc
    return target


def delete_job(job: JobSummary) -> None:
    """Remove a job's folder and everything in it (the person's own photo folder is elsewhere and untouched)."""
    refusal = set_aside_refusal(job)
    if refusal:
        raise WorkdirError(refusal)
    try:
        shutil.rmtree(job.paths.root)
    except OSError as exc:
        raise WorkdirError(f"Job {job.name} could not be deleted ({exc.strerror}); "
                           f"remove {job.paths.root} by hand.") from exc
