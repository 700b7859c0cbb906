"""The suite's guard against runners that outlive their test finds a real runner process and kills it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import RUNNER_MODULE, live_runners, reap_runners
from tests.waiting import wait_until


def test_a_runner_left_behind_is_found_and_killed(tmp_path: Path, monkeypatch) -> None:
    import tests.conftest as guard

    monkeypatch.setattr(guard, "RUNNER_EXIT_GRACE_S", 0.5)
    job = tmp_path / "job"
    job.mkdir()
    # a process that looks like a runner to the guard (argv), without loading a model
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "-m", RUNNER_MODULE, str(job)])
    try:
        # the child's command line is the parent's until it has exec'd: wait for the process to look like one
        wait_until(lambda: live_runners(tmp_path) != {}, 10, "the fake runner to start")
        assert live_runners(tmp_path) == {fake.pid: str(job)}
        assert live_runners(tmp_path / "elsewhere") == {}
        assert reap_runners(tmp_path) == {fake.pid: str(job)}
        assert fake.wait(timeout=10) == -9
        assert live_runners(tmp_path) == {}
    finally:
        fake.kill()
