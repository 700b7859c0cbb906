"""The job lock: one runner per job, and a dead runner's lock is recognised as stale."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ioncannon.job.lock import runner_pid
from ioncannon.job.paths import JobPaths

HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from ioncannon.job.paths import JobPaths
    from ioncannon.job.lock import try_lock as _try_lock
    lock = _try_lock(JobPaths(sys.argv[1]))
    lock.record(os.getpid())
    print("locked", flush=True)
    time.sleep(60)
    """
)


def _hold_lock(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_live_lock_names_its_holder_and_dead_lock_is_stale(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    assert runner_pid(paths) is None
    proc = _hold_lock(paths.root)
    try:
        assert runner_pid(paths) == proc.pid
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert paths.lock_file.read_text().strip()  # the dead runner's pid is still written there...
    assert runner_pid(paths) is None  # ...but nobody holds the lock, so it is stale


def test_deleting_the_lock_file_does_not_let_a_second_runner_in(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    proc = _hold_lock(paths.root)
    try:
        paths.lock_file.unlink()  # a user tidying up, or a careless `rm .ioncannon/*`
        assert runner_pid(paths) is not None  # still seen as running...
        out = subprocess.run(
            [sys.executable, "-m", "ioncannon.engine.runner", str(paths.root), "--workdir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 3 and "another runner" in out.stderr  # ...and a second runner is refused
    finally:
        proc.kill()
        proc.wait()
    assert runner_pid(paths) is None


def test_second_runner_refuses_to_work_on_a_locked_job(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    proc = _hold_lock(paths.root)
    try:
        t = time.time()
        out = subprocess.run(
            [sys.executable, "-m", "ioncannon.engine.runner", str(paths.root), "--workdir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 3 and "another runner" in out.stderr
        assert time.time() - t < 30
    finally:
        proc.kill()
        proc.wait()


def test_engine_imports_without_textual() -> None:
    code = (
        "import sys, ioncannon.engine.runner, ioncannon.engine.stages, ioncannon.job.workdir, "
        "ioncannon.engine.models.load, ioncannon.job.state, ioncannon.cli.main, ioncannon.engine.demo\n"
        "import importlib, pkgutil, ioncannon.engine as e\n"
        "for m in pkgutil.iter_modules(e.__path__):\n"
        "    importlib.import_module('ioncannon.engine.' + m.name)\n"
        "bad = [m for m in ('textual', 'rich') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_only_this_jobs_held_lock_is_adopted_after_an_exec(tmp_path: Path, monkeypatch) -> None:
    from ioncannon.job.lock import LOCK_FD_ENV, adopt_lock, try_lock

    job, other = JobPaths(tmp_path / "job"), JobPaths(tmp_path / "other")
    lock, foreign = try_lock(job), try_lock(other)
    assert lock is not None and foreign is not None
    for handed in ("", "not a number", "99999", str(foreign.fd)):   # nothing, junk, closed, another job's folder
        monkeypatch.setenv(LOCK_FD_ENV, handed)
        assert adopt_lock(job) is None, handed
        assert LOCK_FD_ENV not in os.environ, "the variable is read once, never passed on"
    lock.hand_over_on_exec()
    adopted = adopt_lock(job)
    assert adopted is not None and adopted.fd == lock.fd and not os.get_inheritable(adopted.fd)
    adopted.release()
    foreign.release()
    assert runner_pid(job) is None and runner_pid(other) is None
