"""Per-stage time: the estimate recorded when a job was created, and what each stage really took."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping

from ioncannon.job.events import Failed, RunnerStarted, StageFinished, StageStarted, Stopped, parse_event
from ioncannon.job.fsio import StateFileError, open_job_file, read_json, write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.stages import STAGE_NAMES

_MAX_EVENT_BYTES = 64 << 20  # a finished job's log is a few MB; never read an unbounded file whole
# The events that start, end or cut short a stage attempt (their type names, as written in the log).
_TIMED = tuple(t.__name__ for t in (StageStarted, StageFinished, RunnerStarted, Stopped, Failed))


def write_estimate(paths: JobPaths, stages: Mapping[str, float]) -> None:
    """Record each stage's estimated seconds (stages this version does not know are dropped)."""
    known = {k: round(float(v), 1) for k, v in stages.items() if k in STAGE_NAMES and math.isfinite(v) and v >= 0}
    write_json(paths.estimate_file, {"stages": known})


def read_estimate(paths: JobPaths) -> dict[str, float]:
    """The recorded estimate per stage; empty for a job created without one, or when the file is unusable."""
    try:
        stages = read_json(paths.estimate_file).get("stages", {})
    except StateFileError:
        return {}
    if not isinstance(stages, dict):
        return {}
    return {k: float(v) for k, v in stages.items()
            if k in STAGE_NAMES and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0}


def stage_seconds(paths: JobPaths) -> dict[str, float]:
    """Seconds each stage ran, from the event log, over every attempt.

    A resume runs a stage again: its finished run counts, and so does the attempt a kill, a stop or a
    failure cut short (from its start to the last event it wrote).
    """
    try:  # never through a symlink, never waiting on a FIFO put in its place
        with os.fdopen(open_job_file(paths.events_file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return {}
            data = fh.read(_MAX_EVENT_BYTES)
    except OSError:
        return {}
    seconds: dict[str, float] = {}
    started: StageStarted | None = None  # the stage attempt under way, if any
    previous = ""  # the line before, whose time is the cut-off attempt's last sign of life
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not any(name in line for name in _TIMED):  # most lines are progress: skip them before parsing
            previous = line
            continue
        event = parse_event(line)
        if isinstance(event, StageFinished):
            if not event.skipped:
                seconds[event.stage] = seconds.get(event.stage, 0.0) + event.seconds
            started = None
        elif isinstance(event, StageStarted):
            started = event
        elif event is not None and started is not None:  # the runner ended or restarted mid-stage
            last = parse_event(previous) if previous else None
            end = event.t if isinstance(event, (Stopped, Failed)) else (last.t if last is not None else started.t)
            seconds[started.stage] = seconds.get(started.stage, 0.0) + max(0.0, end - started.t)
            started = None
        previous = line
    return seconds
