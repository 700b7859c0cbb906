"""A real detached runner whose GPU kernel crashes mid-job starts itself again without that kernel and finishes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ioncannon.job import handle
from ioncannon.job.events import Message, RunnerStarted, StageStarted, parse_event
from ioncannon.job.lock import wait_for_exit
from ioncannon.job.state import read_state
from ioncannon.job.workdir import create_job
from tests.engine.test_train_support import small_demo_job

pytestmark = pytest.mark.slow
PLANTED = Path(__file__).resolve().parent / "kernel_crash"   # its sitecustomize.py crashes training under flash


def test_a_kernel_crash_restarts_the_runner_in_place_and_the_job_finishes(workdir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PLANTED), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("IONCANNON_PLANT_KERNEL_CRASH", "flash")
    spec = small_demo_job(workdir, "crashy", steps=6, checkpoint_every=0, sample_every=1000)
    paths = create_job(workdir, spec)
    pid = handle.start(paths, workdir)
    assert wait_for_exit(paths, 600), "the runner did not finish"
    state = read_state(paths)
    assert state.status == "finished", (state.message, state.hint)

    events = [e for e in map(parse_event, paths.events_file.read_text().splitlines()) if e is not None]
    starts = [e for e in events if isinstance(e, RunnerStarted)]
    assert [s.pid for s in starts] == [pid, pid], "started again in place: the same process the client follows"
    assert starts[1].resumed
    warnings = [e.text for e in events if isinstance(e, Message) and e.level == "warning"]
    assert any("flash attention kernel crashed on this card during train" in w for w in warnings), warnings
    stages = [e.stage for e in events if isinstance(e, StageStarted)]
    assert stages.count("train") == 2 and stages.count("cache") == 1, "finished stages are not run again"
    log = paths.log_file.read_text()
    assert "starting the runner again without the flash kernel" in log
    assert "flash failed: failed earlier in a job on this card" in log, "the restarted runner left flash out"
