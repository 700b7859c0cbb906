"""The job's live state (state.json) and an incremental reader of its event log (events.jsonl)."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ioncannon.job.events import Event, parse_event
from ioncannon.job.fsio import StateFileError, open_job_file, read_json, write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.printable import printable
from ioncannon.job.stages import STAGE_NAMES
from ioncannon.job.stages import label as stage_label
from ioncannon.job.validate import typed_fields

DAMAGED_STATE_HINT = ("`ioncannon resume` rebuilds it: finished work on disk is found again and training "
                      "continues from its last checkpoint.")
LIVE_STATUSES = ("running", "stopping")      # a runner should be holding the lock
ENDED_STATUSES = ("finished", "failed", "stopped")


# A published training checkpoint: a `step_00000200` folder whose manifest was written last (see the engine's store).
CHECKPOINT_NAME = re.compile(r"^step_(\d{8})$")
CHECKPOINT_MANIFEST = "manifest.json"


def last_checkpoint_step(paths: JobPaths) -> int | None:
    """The step of the newest published checkpoint, or None when training has saved none."""
    try:
        entries = list(paths.checkpoints.iterdir())
    except OSError:
        return None
    steps = [int(m.group(1)) for p in entries
             if (m := CHECKPOINT_NAME.match(p.name)) and (p / CHECKPOINT_MANIFEST).is_file()]
    return max(steps, default=None)


def resume_promise(paths: JobPaths, state: JobState) -> str:
    """What resuming keeps and where training goes on, as it really is on disk (never a checkpoint that isn't there)."""
    if "train" in state.stages_done:
        return f"finished stages are kept (training is done); it goes on with {stage_label(state.stage) or 'the rest'}"
    step = last_checkpoint_step(paths)
    if step is not None:
        return f"finished stages are kept; training continues from its step-{step} checkpoint"
    if state.stage == "train":
        return "finished stages are kept; training starts again from step 0 (no checkpoint was saved yet)"
    return "finished stages are kept; the rest runs from there"


def shown_done(paths: JobPaths, state: JobState) -> int:
    """The step count to show: progress lines are throttled, so a newer checkpoint (the one written on stop) wins."""
    if state.stage == "train":
        step = last_checkpoint_step(paths)
        if step is not None and step > state.done:
            return step
    return state.done


def is_live(status: str, alive: bool) -> bool:
    """Whether the job is at work now: quitting the wizard warns that it keeps running."""
    return alive and status not in ENDED_STATUSES


def shown_status(status: str, alive: bool) -> str:
    """The status a person should read: a live status whose runner died is "interrupted"."""
    return "interrupted" if status in LIVE_STATUSES and not alive else status


@dataclass
class JobState:
    """What a job is doing now; the runner rewrites it atomically on every change."""

    status: str = "new"  # new | running | stopping | stopped | failed | finished | unknown
    stage: str | None = None
    stages_done: list[str] = field(default_factory=list)
    done: int = 0
    total: int = 0
    loss: float | None = None
    rate: float = 0.0
    eta_s: float | None = None
    message: str = ""
    hint: str = ""
    pid: int | None = None
    started_at: float | None = None
    updated_at: float | None = None
    elapsed_s: float = 0.0  # run time accumulated over all runner lifetimes

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobState:
        """The state from its JSON form; StateFileError naming the first damaged field."""
        values, problems = typed_fields(cls, data, skip=("schema_version",))
        if not problems:
            problems = [f"stages_done names {s!r}, not a stage" for s in values.get("stages_done", ())
                        if s not in STAGE_NAMES][:1]
        if problems:
            raise StateFileError(f"state.json is damaged ({problems[0].rstrip('.')})")
        for key in ("message", "hint"):  # shown by status and the wizard: an edited file can't carry escapes
            if isinstance(values.get(key), str):
                values[key] = printable(values[key], 4000)
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def read_state(paths: JobPaths) -> JobState:
    """Never raises: a missing file is a new job; a damaged one is status 'unknown', with what to do."""
    if not paths.state_file.exists() and not paths.state_file.is_symlink():
        return JobState()
    try:
        return JobState.from_json(read_json(paths.state_file))
    except StateFileError as exc:
        return JobState(status="unknown", message=str(exc), hint=DAMAGED_STATE_HINT)


def write_state(paths: JobPaths, state: JobState) -> None:
    state.updated_at = time.time()
    write_json(paths.state_file, state.to_json())


class EventTail:
    """Reads events appended to events.jsonl since the last call; tolerates a partial last line."""

    MAX_READ = 8 << 20
    MAX_LINE = 1 << 20

    def __init__(self, path: str | Path, from_start: bool = True) -> None:
        self.path = Path(path)
        self._offset = 0
        self._pending = b""
        self._inode: int | None = None
        if not from_start and self.path.exists():
            self._offset = self.path.lstat().st_size

    def read_new(self) -> list[Event]:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return []
        if not stat.S_ISREG(st.st_mode):  # a symlink or FIFO in its place is never followed or read
            return []
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._offset):
            self._offset, self._pending = 0, b""  # the log was replaced: start over
        self._inode = st.st_ino
        if st.st_size == self._offset:
            return []
        try:
            fh = os.fdopen(open_job_file(self.path), "rb")
        except OSError:
            return []
        with fh:
            fh.seek(self._offset)
            chunk = fh.read(self.MAX_READ)  # bounded: the rest comes on the next call
        self._offset += len(chunk)
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()  # the last piece has no newline yet
        if len(self._pending) > self.MAX_LINE:  # no event is this long: damage, never to be parsed
            self._pending = b""
        events = []
        for raw in lines:
            event = parse_event(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events
