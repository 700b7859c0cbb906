"""What the job screens show, folded from the job's events and state (pure: no Textual)."""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

from ioncannon.job.events import (
    CheckpointSaved,
    CollageReady,
    Event,
    Failed,
    JobFinished,
    Message,
    Progress,
    RunnerStarted,
    SampleReady,
    StageFinished,
    StageStarted,
    Stopped,
)
from ioncannon.job.stages import STAGE_NAMES
from ioncannon.job.state import JobState

MAX_LOSSES = 240
MAX_MESSAGES = 40


@dataclass
class JobView:
    """The job as the screens see it; `apply` folds new events in, `update_state` the latest state.json."""

    state: JobState = field(default_factory=JobState)
    alive: bool = False
    stage: str | None = None
    stages_done: list[str] = field(default_factory=list)
    progress: dict[str, Progress] = field(default_factory=dict)  # latest Progress per stage
    losses: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_LOSSES))
    loss_steps: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_LOSSES))  # the step of each loss
    preview: SampleReady | None = None  # the latest training sample (or class image before training)
    generated: dict[str, int] = field(default_factory=dict)  # prompt label -> images written
    collages: list[CollageReady] = field(default_factory=list)
    messages: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=MAX_MESSAGES))
    last_checkpoint: int | None = None
    failed: Failed | None = None
    stopped: Stopped | None = None
    finished: JobFinished | None = None
    revision: int = 0  # bumped on every change, so widgets can skip redundant refreshes

    def apply(self, events: list[Event]) -> None:
        for event in events:
            self._apply_one(event)
        if events:
            self.revision += 1

    def update_state(self, state: JobState | None, alive: bool) -> None:
        if state is None:
            return
        self.state, self.alive = state, alive
        # state.json is authoritative for what is done: the event log may start mid-job (a rotated log).
        for stage in state.stages_done:
            if stage not in self.stages_done:
                self.stages_done.append(stage)
        if state.stage is not None:
            self.stage = state.stage
        self.revision += 1

    def _apply_one(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.progress[event.stage] = event
            if event.stage == "train" and event.loss is not None:
                # a resumed run replays the steps after its checkpoint: their first losses were thrown away
                while self.loss_steps and self.loss_steps[-1] >= event.done:
                    self.loss_steps.pop()
                    self.losses.pop()
                self.losses.append(event.loss)
                self.loss_steps.append(event.done)
        elif isinstance(event, SampleReady):
            if event.stage == "train" or (event.stage == "class_images" and (
                    self.preview is None or self.preview.stage != "train")):
                self.preview = event
            elif event.stage == "generate":
                self.generated[event.label] = self.generated.get(event.label, 0) + 1
        elif isinstance(event, CollageReady):
            self.collages = [c for c in self.collages if c.keyword != event.keyword] + [event]
        elif isinstance(event, StageStarted):
            self.stage = event.stage
        elif isinstance(event, StageFinished):
            if event.stage not in self.stages_done:
                self.stages_done.append(event.stage)
        elif isinstance(event, Message):
            self.messages.append((event.level, event.text))
        elif isinstance(event, CheckpointSaved):
            self.last_checkpoint = event.step
            self.messages.append(("info", f"checkpoint saved at step {event.step}"))
        elif isinstance(event, Failed):
            self.failed = event
            self.messages.append(("error", event.message))
        elif isinstance(event, Stopped):
            self.stopped = event
            self.messages.append(("warning", f"stopped: {event.reason}" if event.reason else "stopped"))
        elif isinstance(event, RunnerStarted):
            # A restarted runner clears an earlier failure or stop: the job is live again.
            self.failed = self.stopped = None
            # the last run's speed is not this one's: no rate or ETA until the new runner reports its own
            self.progress = {stage: dataclasses.replace(p, rate=0.0, eta_s=None) for stage, p in self.progress.items()}
            self.messages.append(("info", "runner resumed the job" if event.resumed else "runner started"))
        elif isinstance(event, JobFinished):
            self.finished = event

    def stage_marks(self, unused: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """(stage, mark) for every stage in run order: ✓ done, ▶ running, ✗ failed, · waiting, – not made here."""
        marks = []
        for stage in STAGE_NAMES:
            if stage in unused:
                mark = "–"  # a stage this job's plan leaves out (class images without prior preservation)
            elif stage in self.stages_done:
                mark = "✓"
            elif stage == self.stage and self.failed is not None:
                mark = "✗"
            elif stage == self.stage:
                mark = "▶"
            else:
                mark = "·"
            marks.append((stage, mark))
        return marks
