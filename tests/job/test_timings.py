"""The per-stage estimate kept with a job, and the stage times read back from its event log."""

from __future__ import annotations

from pathlib import Path

from ioncannon.job.events import Progress, RunnerStarted, StageFinished, StageStarted, Stopped
from ioncannon.job.fsio import append_line
from ioncannon.job.paths import JobPaths
from ioncannon.job.timings import read_estimate, stage_seconds, write_estimate


def test_estimate_round_trips_and_drops_what_is_not_a_stage(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    paths.ensure()
    write_estimate(paths, {"train": 99.04, "cache": 8, "warp drive": 3, "generate": float("nan")})
    assert read_estimate(paths) == {"train": 99.0, "cache": 8.0}


def test_a_missing_or_damaged_estimate_reads_as_none(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    paths.ensure()
    assert read_estimate(paths) == {}
    paths.estimate_file.write_text('{"schema_version": 1, "stages": {"train": "soon", "cache": true}}')
    assert read_estimate(paths) == {}
    paths.estimate_file.write_text("{not json")
    assert read_estimate(paths) == {}


def test_stage_times_sum_over_resumes_and_skip_other_events(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    paths.ensure()
    for event in (StageFinished(stage="cache", seconds=8.0), Progress(stage="train", done=3, total=9),
                  StageFinished(stage="train", seconds=60.0), StageFinished(stage="train", seconds=40.0),
                  StageFinished(stage="export", seconds=5.0, skipped=True)):
        append_line(paths.events_file, event.dumps())
    append_line(paths.events_file, '{"type": "StageFinished", "stage": "generate", "seconds": "a while"}')
    assert stage_seconds(paths) == {"cache": 8.0, "train": 100.0}


def test_a_stage_attempt_cut_short_counts_up_to_its_last_event(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    paths.ensure()
    for event in (RunnerStarted(pid=1, t=0.0), StageStarted(stage="train", t=10.0),
                  Progress(stage="train", done=50, total=100, t=70.0),  # then kill -9: no more events
                  RunnerStarted(pid=2, resumed=True, t=500.0), StageStarted(stage="train", t=510.0),
                  Stopped(reason="asked to stop", t=530.0),  # a stop ends an attempt where it says so
                  RunnerStarted(pid=3, resumed=True, t=600.0), StageStarted(stage="train", t=605.0),
                  StageFinished(stage="train", seconds=40.0, t=645.0)):
        append_line(paths.events_file, event.dumps())
    assert stage_seconds(paths) == {"train": 60.0 + 20.0 + 40.0}
