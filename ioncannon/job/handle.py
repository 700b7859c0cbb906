"""The one client API over jobs: create, start, find, follow, stop, resume. The CLI and the wizard both use it."""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ioncannon.job.errors import JobError
from ioncannon.job.events import Event
from ioncannon.job.fsio import open_job_file
from ioncannon.job.lock import RUNNER_MODULE, RunnerBusy, request_stop, runner_pid, wait_for_exit
from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.checks import door_problems
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.job.state import EventTail, JobState, read_state, write_state
from ioncannon.job.timings import write_estimate
from ioncannon.job.validate import SpecError
from ioncannon.job.workdir import JobSummary, WorkdirError, create_job, find_job, summarise

DAMAGED_JOB_HINT = ("Fix the field named above in the job's .ioncannon/job.json, then `ioncannon resume`; or start a "
                    "new job and remove this one's copies of the subject with `ioncannon wipe NAME`.")
START_TIMEOUT_S = 15.0


def check_spec(spec: JobSpec, workdir: str | Path | None = None) -> None:
    """Refuse a spec the runner could not use before anything is written (SpecError: one sentence per problem):
    its fields, then the planner's checks at the door (job/plan/checks.py), the same the planner ran.

    With `workdir`, a prompt pack in the job's own folder may be missing still: the wizard writes it just after.
    """
    problems = spec.problems()
    if not problems:
        problems, _styles = door_problems(spec, workdir)
    if problems:
        raise SpecError(problems)


def absolute_paths(spec: JobSpec) -> JobSpec:
    """Relative paths in a job file mean "from where the command ran"; the runner works from the job's own folder,
    so they are made absolute once, here. A base model that is not a local folder is a hub id and stays as is."""
    model = Path(spec.base_model).expanduser()
    pack = spec.generate.prompt_pack
    return spec.replace(
        photos_dir=str(Path(spec.photos_dir).expanduser().resolve()),
        base_model=str(model.resolve()) if model.exists() else spec.base_model,
        generate=dataclasses.replace(spec.generate, prompt_pack=str(Path(pack).expanduser().resolve()) if pack
                                     else ""),
    )


def default_threads() -> int:
    """The CPU thread count a new job pins: OMP_NUM_THREADS when set, else the CPUs this process may use."""
    try:
        wanted = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        wanted = 0
    if wanted >= 1:
        return min(wanted, 1024)
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 1024))
    except (AttributeError, OSError):  # not on Linux
        return max(1, min(os.cpu_count() or 1, 1024))


def create(workdir: str | Path, spec: JobSpec, estimate: Mapping[str, float] | None = None) -> JobPaths:
    """Check the spec and write the job's folder and job.json; refuses a name already taken.

    The runner's thread count is pinned here, so every resume computes the same way the first run did.
    `estimate` (seconds per stage, as the hardware step showed them) is kept for the finish screen to compare.
    """
    check_spec(spec, workdir)
    if spec.threads is None:
        spec = spec.replace(threads=default_threads())
    spec = absolute_paths(spec)
    try:
        paths = create_job(workdir, spec)
    except WorkdirError as exc:
        raise JobError(str(exc)) from exc
    if estimate:
        write_estimate(paths, estimate)
    return paths


def start(paths: JobPaths, workdir: str | Path) -> int:
    """Start the job's runner in its own session, so a dropped SSH link or a closed TUI leaves it running.

    Returns the runner's pid once it holds the job's lock (or has died trying). RunnerBusy if one already runs.
    """
    if runner_pid(paths) is not None:
        raise RunnerBusy(f"Job {paths.root.name} already has a running runner.")
    paths.meta.mkdir(parents=True, exist_ok=True)
    if paths.meta.is_symlink():
        raise JobError(f"{paths.meta} is a symlink, not the job's own folder: nothing was started.")
    try:
        fd = open_job_file(paths.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO would block the runner's first line forever
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file")
        log = os.fdopen(fd, "ab")
    except OSError as exc:
        raise JobError(f"can't open the job's log {paths.log_file} ({exc.strerror}): a symlink or something "
                       "other than a file is in its place; remove it, then try again.") from exc
    with log:
        proc = subprocess.Popen(
            runner_command(paths, workdir), cwd=paths.meta, env=runner_env(),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    # wait until it holds the lock (or died trying) so callers see a consistent picture
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        # ours holding the lock is the answer; another pid there means ours lost a race and is about to exit
        if runner_pid(paths) == proc.pid or proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        # ours exited at once: another command's runner won the race for the lock (name that one, the live one)
        other = runner_pid(paths)
        if other is not None:
            raise RunnerBusy(f"Job {paths.root.name} was started by another command at the same moment "
                             f"(runner pid {other}).", other)
    return proc.pid


def runner_command(paths: JobPaths, workdir: str | Path) -> list[str]:
    """The runner's command line. `-P` keeps the launching directory off sys.path (a stray numpy.py or an
    `ioncannon` checkout there must not load into the runner); not `-I`, which would also drop PYTHONPATH and
    the user's site-packages, where a `pip install --user` puts ioncannon itself."""
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe_path, "-m", RUNNER_MODULE, str(paths.root.resolve()),
            "--workdir", str(Path(workdir).resolve())]


def runner_env() -> dict[str, str]:
    """The runner's environment: this one, with the launching directory kept off sys.path (Python 3.11+)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONSAFEPATH"] = "1"
    return env


def find(workdir: str | Path, name: str | None) -> JobSummary:
    """A job by name (or by its folder's path), or the newest when no name is given; JobError when there is none."""
    job = find_job(workdir, name)
    if job is None and name and JobPaths(Path(name).expanduser()).job_file.is_file():
        job = summarise(JobPaths(Path(name).expanduser()))
    if job is None:
        raise JobError(f"no job called {name!r} in {workdir}: pass the job's name, or --workdir where your jobs are."
                       if name else f"no jobs in {workdir} yet.")
    return job


def resume(job: JobSummary, workdir: str | Path) -> int:
    """Restart a job's runner: finished stages are skipped, training continues from its last checkpoint."""
    return start(job.paths, workdir)


def change_base_model(job: JobSummary, base_model: str) -> JobSpec:
    """A job that stopped or failed takes another base model: job.json names it, and every stage that read the old
    one (all but the photos) runs again on resume. JobError when the job runs, is damaged or the value is refused."""
    if job.alive:
        raise JobError(f"Job {job.name} is running: stop it first (`ioncannon stop`).")
    if job.spec is None:
        raise JobError(f"Job {job.name} can't be changed: {job.problem}")
    spec = absolute_paths(job.spec.replace(base_model=base_model.strip()))
    problems = [p for p in spec.problems() if p.startswith("base_model")]
    if problems:
        raise JobError(" ".join(problems))
    if spec.base_model == job.spec.base_model:
        return spec
    save_spec(job.paths, spec)
    state = read_state(job.paths)
    state.stages_done = [s for s in state.stages_done if s == "prepare"]  # photo copies don't depend on the model
    write_state(job.paths, state)
    return spec


def stop(paths: JobPaths) -> bool:
    """Ask the runner to checkpoint and stop; False when none was running; NotTheRunner (a JobError) when the
    job is locked by a process that can't be shown to be its runner (nothing is signalled then)."""
    return request_stop(paths)


def wait_until_exited(paths: JobPaths, timeout_s: float) -> bool:
    """Wait for the runner to let go of the job; True once it has."""
    return wait_for_exit(paths, timeout_s)


def is_alive(paths: JobPaths) -> bool:
    """Whether a live runner holds the job's lock."""
    return runner_pid(paths) is not None


@dataclass
class JobNews:
    """What a follower learns in one look: new events, the current state, whether the runner lives."""

    events: list[Event]
    state: JobState
    alive: bool


def follow(paths: JobPaths, *, from_start: bool = False, interval_s: float = 0.2,
           cancelled: Callable[[], bool] = lambda: False) -> Iterator[JobNews]:
    """Look at the job every `interval_s` until `cancelled()` or the caller stops iterating."""
    tail = EventTail(paths.events_file, from_start=from_start)
    while not cancelled():
        yield JobNews(tail.read_new(), read_state(paths), is_alive(paths))
        time.sleep(interval_s)
