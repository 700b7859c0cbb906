"""Find, create and list jobs in a work dir."""

from __future__ import annotations

import os
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
    paths.ensure()
    try:
        # O_EXCL: of two commands creating the same name at once, exactly one wins
        os.close(os.open(paths.job_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise WorkdirError(_taken(spec.name, base)) from None
    save_spec(paths, spec)
    return paths


def _taken(name: str, base: Path) -> str:
    return (f"A job named {name!r} already exists in {base}: resume it with `ioncannon resume {name}`, "
            "or give the new job another name.")


def name_taken(workdir: str | Path, name: str) -> str | None:
    """The sentence create_job would say when `name` is taken, asked before slower checks; None when it is free."""
    base = Path(workdir).expanduser().resolve()
    return _taken(name, base) if JobPaths(base / name).job_file.exists() else None


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
