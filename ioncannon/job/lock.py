"""The job's runner lock: a kernel-held flock, so a dead runner's lock is recognised at once."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from typing import IO

from ioncannon.job.paths import JobPaths


class RunnerBusy(Exception):
    """Another live runner already works on this job."""


def try_lock(paths: JobPaths) -> IO[str] | None:
    """Take the job's lock; None if a live process holds it. The kernel drops it when its holder dies."""
    paths.meta.mkdir(parents=True, exist_ok=True)
    fh = open(paths.lock_file, "a+", encoding="utf-8")  # noqa: SIM115 - the open file is the lock: it outlives this call
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def runner_pid(paths: JobPaths) -> int | None:
    """The pid of the live runner holding the job's lock, else None (a stale lock is cleared)."""
    if not paths.lock_file.exists():
        return None
    fh = try_lock(paths)
    if fh is not None:  # nobody holds it: whatever pid it names is dead
        fh.truncate(0)
        fh.close()
        return None
    try:
        text = paths.lock_file.read_text(encoding="utf-8").strip()
        return int(text.split()[0]) if text else -1
    except (OSError, ValueError):
        return -1


def request_stop(paths: JobPaths) -> bool:
    """Ask the runner to checkpoint and stop; False when no runner is alive."""
    pid = runner_pid(paths)
    if pid is None or pid <= 0:
        return False
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
