"""A budget cap stops the job cleanly between steps, keeping what was done, and says how to go on."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ioncannon.engine.demo import demo_spec
from ioncannon.engine.runner import Runner
from ioncannon.job.events import Stopped
from ioncannon.job.state import EventTail, read_state
from ioncannon.job.workdir import create_job
from ioncannon.rental.costs import BUDGET_HINT


def test_time_budget_stops_the_job_with_a_resumable_state(workdir: Path) -> None:
    spec = demo_spec(workdir, name="capped")
    spec = spec.replace(budget_minutes=0.05, train=dataclasses.replace(spec.train, steps=100000))
    paths = create_job(workdir, spec)
    code = Runner(paths, workdir, spec, logging.getLogger("test")).run()
    state = read_state(paths)
    assert code == 0 and state.status == "stopped"
    assert state.message.startswith("budget reached") and state.hint == BUDGET_HINT
    assert "prepare" in state.stages_done and "train" not in state.stages_done
    events = EventTail(paths.events_file).read_new()
    assert isinstance(events[-1], Stopped) and events[-1].reason.startswith("budget reached")
    assert 3 <= state.elapsed_s < 60
