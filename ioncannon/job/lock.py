"""The job's runner lock: a kernel-held flock on the job folder itself, so deleting files can't break it."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path

from ioncannon.job.errors import JobError
from ioncannon.job.fsio import atomic_write_text, open_job_file
from ioncannon.job.paths import JobPaths
from ioncannon.job.state import read_state

RUNNER_MODULE = "ioncannon.engine.runner"
# A runner that starts itself again in place (exec) hands its held lock to the new program through this variable,
# so there is no moment in which the job looks unlocked (and so interrupted) to the clients following it.
LOCK_FD_ENV = "IONCANNON_RUNNER_LOCK_FD"


class RunnerBusy(Exception):
    """Another live runner already works on this job (its pid, -1 when unknown, in `pid`)."""

    def __init__(self, message: str, pid: int = -1) -> None:
        super().__init__(message)
        self.pid = pid


class RunnerLock:
    """The held lock: an open descriptor of the job folder. The kernel drops it when its holder dies."""

    def __init__(self, paths: JobPaths, fd: int) -> None:
        self.paths, self.fd = paths, fd

    def record(self, pid: int) -> None:
        """Note the holder's pid for `status` and `stop` (the note is a convenience: the lock is the folder's)."""
        atomic_write_text(self.paths.lock_file, f"{pid} {time.time():.0f}\n")

    def release(self) -> None:
        os.close(self.fd)

    def hand_over_on_exec(self) -> None:
        """Keep the lock held through an exec of this process: the program started adopts it (`adopt_lock`)."""
        os.set_inheritable(self.fd, True)
        os.environ[LOCK_FD_ENV] = str(self.fd)


def adopt_lock(paths: JobPaths) -> RunnerLock | None:
    """The lock this process was handed across an exec, if it was (and it is this job's, still held); else None."""
    text = os.environ.pop(LOCK_FD_ENV, "")
    if not text.isdigit():
        return None
    fd = int(text)
    try:
        held, folder = os.fstat(fd), os.stat(paths.root)
        if (held.st_dev, held.st_ino) != (folder.st_dev, folder.st_ino):
            return None   # some other descriptor: leave it alone
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # ours already: succeeds at once
        os.set_inheritable(fd, False)
    except OSError:
        return None
    return RunnerLock(paths, fd)


def _take(paths: JobPaths) -> RunnerLock | None:
    try:
        fd = os.open(paths.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return RunnerLock(paths, fd)


def try_lock(paths: JobPaths) -> RunnerLock | None:
    """Take the job's lock; None if a live process holds it.

    The lock is on the job folder, not on a file in it: a lock file can be deleted (or replaced) while the
    job runs, and a second runner would then lock the new file and train the same job twice.
    """
    paths.meta.mkdir(parents=True, exist_ok=True)
    return _take(paths)


def _noted_pid(paths: JobPaths) -> int:
    try:
        fd = open_job_file(paths.lock_file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            text = os.read(fd, 64).decode("utf-8").strip()
        finally:
            os.close(fd)
        return int(text.split()[0]) if text else -1
    except (OSError, ValueError, UnicodeDecodeError, IndexError):
        pass
    pid = read_state(paths).pid  # the note was deleted: the runner also keeps its pid in state.json
    return pid if isinstance(pid, int) and pid > 0 else -1


def runner_pid(paths: JobPaths) -> int | None:
    """The pid of the live runner holding the job's lock (-1 when its pid is unknown), else None."""
    if not paths.root.is_dir():
        return None
    probe = _take(paths)
    if probe is not None:  # nobody holds it: whatever pid the note names is dead (the note is left: harmless)
        probe.release()
        return None
    return _noted_pid(paths)


class NotTheRunner(JobError):
    """The job is locked, but no process can be shown to be its runner: nothing was signalled."""


def is_job_runner(pid: int, paths: JobPaths) -> bool:
    """Whether `pid` is provably this job's runner: its command line is the runner's, for this job's folder, and
    it holds that folder open (the lock). A pid from a note can be stale or reused by any other process."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    root = os.fsencode(str(paths.root.resolve()))
    if RUNNER_MODULE.encode() not in argv or root not in argv:
        return False
    try:
        fds = os.listdir(proc / "fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.fsencode(os.readlink(proc / "fd" / fd)) == root:
                return True
        except OSError:
            continue
    return False


def request_stop(paths: JobPaths) -> bool:
    """Ask the runner to checkpoint and stop; False when no runner is alive. NotTheRunner when the job is locked
    but the pid can't be shown to be its runner (then nothing is signalled)."""
    pid = runner_pid(paths)
    if pid is None:
        return False
    if pid <= 0 or not is_job_runner(pid, paths):
        raise NotTheRunner(
            f"job {paths.root.name} is locked, but no process could be shown to be its runner"
            + (f" (the lock note names pid {pid}, which is something else)" if pid > 0 else "")
            + ": nothing was signalled. `ps aux | grep ioncannon.engine.runner` shows the runner to stop by hand.")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def wait_for_exit(paths: JobPaths, timeout: float) -> bool:
    """Wait up to `timeout` seconds for the runner to let go of the lock; True once it has."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if runner_pid(paths) is None:
            return True
        time.sleep(0.1)
    return runner_pid(paths) is None
