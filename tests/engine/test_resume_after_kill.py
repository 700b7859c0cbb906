"""A kill -9 of the runner mid-training, then resume: finished stages are not redone, steps continue."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ioncannon.cli.main import job_status
from ioncannon.job import handle
from ioncannon.job.events import CheckpointSaved, Progress, RunnerStarted, StageStarted
from ioncannon.job.lock import runner_pid, wait_for_exit
from ioncannon.job.state import EventTail, read_state
from ioncannon.job.workdir import create_job, find_job
from tests.engine.test_train_support import small_demo_job
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def test_kill_dash_nine_then_resume_continues_from_checkpoint(workdir: Path) -> None:
    spec = small_demo_job(workdir, "killed", gen_steps=4, steps=40, checkpoint_every=10, sample_every=1000)
    paths = create_job(workdir, spec)
    first_pid = handle.start(paths, workdir)
    log = EventTail(paths.events_file)
    saved: list[int] = []

    def training_past_first_checkpoint() -> bool:
        state = read_state(paths)
        assert state.status not in ("failed", "finished"), state.message
        saved.extend(e.step for e in log.read_new() if isinstance(e, CheckpointSaved))
        return state.stage == "train" and state.done >= 14 and bool(saved)

    wait_until(training_past_first_checkpoint, 240, "training to pass its first checkpoint")
    os.kill(first_pid, signal.SIGKILL)
    wait_until(lambda: runner_pid(paths) is None, 30, "the lock to be released")

    job = find_job(workdir, "killed")
    assert job is not None and job_status(job)["status"] == "interrupted"
    saved.extend(e.step for e in log.read_new() if isinstance(e, CheckpointSaved))
    # a checkpoint published just before the kill may not have told the event log yet: the folder is the truth
    on_disk = [int(p.name.removeprefix("step_")) for p in paths.checkpoints.glob("step_*") if p.is_dir()]
    last_checkpoint = max(saved + on_disk)

    tail = EventTail(paths.events_file, from_start=False)
    handle.start(paths, workdir)
    assert wait_for_exit(paths, 300), "resumed runner did not finish"
    state = read_state(paths)
    assert state.status == "finished", (state.message, state.hint)

    after = tail.read_new()
    assert isinstance(after[0], RunnerStarted) and after[0].resumed
    restarted = [e.stage for e in after if isinstance(e, StageStarted)]
    assert restarted[0] == "train" and "prepare" not in restarted and "cache" not in restarted
    steps = [e.done for e in after if isinstance(e, Progress) and e.stage == "train"]
    # continued right after the last checkpoint, not from step 0
    assert steps and last_checkpoint < steps[0] <= last_checkpoint + 10
    assert steps[-1] == 40
