"""Typed, JSON-serialisable events the runner appends to events.jsonl and the TUI reads."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ioncannon.job.fsio import too_deep
from ioncannon.job.validate import typed_fields


@dataclass(frozen=True)
class Event:
    t: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **dataclasses.asdict(self)}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


@dataclass(frozen=True)
class RunnerStarted(Event):
    pid: int
    resumed: bool = False


@dataclass(frozen=True)
class StageStarted(Event):
    stage: str
    detail: str = ""


@dataclass(frozen=True)
class StageFinished(Event):
    stage: str
    seconds: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class Progress(Event):
    """`done` of `total` units of `stage` (steps, images); rate in units/s."""

    stage: str
    done: int
    total: int
    rate: float = 0.0
    eta_s: float | None = None
    loss: float | None = None
    label: str = ""


@dataclass(frozen=True)
class SampleReady(Event):
    """A preview image (training sample) or a finished output image was written."""

    stage: str
    path: str
    label: str = ""
    step: int | None = None


@dataclass(frozen=True)
class CollageReady(Event):
    keyword: str
    path: str


@dataclass(frozen=True)
class CheckpointSaved(Event):
    step: int
    path: str


@dataclass(frozen=True)
class Message(Event):
    level: str  # info | warning | error
    text: str


@dataclass(frozen=True)
class Failed(Event):
    stage: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class Stopped(Event):
    reason: str = ""


@dataclass(frozen=True)
class JobFinished(Event):
    seconds: float
    outputs: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunnerStarted, StageStarted, StageFinished, Progress, SampleReady, CollageReady,
        CheckpointSaved, Message, Failed, Stopped, JobFinished,
    )
}

Emit = Callable[[Event], None]


def parse_event(line: str) -> Event | None:
    """Parse one events.jsonl line; None for a blank, damaged or unknown line (never raises)."""
    try:
        data = json.loads(line)
        if too_deep(data):  # no event nests: re-encoding or walking a deep one would run out of stack
            return None
        cls = EVENT_TYPES[data.pop("type")]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    # a line with a field of the wrong type is damage too: readers format these values without checking
    values, problems = typed_fields(cls, data)
    if problems:
        return None
    try:
        return cls(**values)
    except TypeError:  # a required field is missing
        return None
