"""Per-stage time: the estimate recorded when a job was created, and what each stage really took."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ioncannon.job.events import StageFinished, parse_event
from ioncannon.job.fsio import StateFileError, read_json, write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.stages import STAGE_NAMES

_MAX_EVENT_BYTES = 64 << 20  # a finished job's log is a few MB; never read an unbounded file whole


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
    """Seconds each finished stage ran, from the event log (summed when a resume ran a stage again)."""
    try:
        with open(paths.events_file, "rb") as fh:
            data = fh.read(_MAX_EVENT_BYTES)
    except OSError:
        return {}
    seconds: dict[str, float] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        if "StageFinished" not in line:  # most lines are progress: skip them before parsing
            continue
        event = parse_event(line)
        if isinstance(event, StageFinished) and not event.skipped:
            seconds[event.stage] = seconds.get(event.stage, 0.0) + event.seconds
    return seconds
