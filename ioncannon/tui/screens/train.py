"""Training: stages, a live progress bar (step, it/s, ETA, loss), the loss sparkline and the latest preview."""

from __future__ import annotations

import dataclasses

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from ioncannon.job.stages import STAGES
from ioncannon.job.stages import stage as stage_info
from ioncannon.tui.jobview import JobView
from ioncannon.tui.screens.job import JobScreen
from ioncannon.tui.widgets.preview import ImagePreview
from ioncannon.tui.widgets.progress import LossSparkline, ProgressPanel, StageList
from ioncannon.tui.wizard import Step

SHOWN_HERE = frozenset(s.name for s in STAGES if s.screen == "train")


# What a stage does before its first progress line (loading a model takes a while: say which).
WAITING = {
    "fetch": "asking the Hugging Face Hub for the base model's files and sizes…",
    "prepare": "checking the photos and writing their training copies…",
    "class_images": "loading the base model to draw the class images…",
    "cache": "loading the VAE and text encoders to cache the photos…",
    "train": "loading the model and setting up training…",
}


class TrainScreen(JobScreen):
    """Step 5: the job from photos to the trained model."""

    STEP = Step.TRAIN

    def __init__(self) -> None:
        super().__init__()
        self._preview_path = ""

    def compose_body(self) -> ComposeResult:
        with Vertical(id="job-body"):
            yield StageList(id="job-stages")
            yield ProgressPanel(id="job-progress")
            with Horizontal(id="train-panes"):
                yield LossSparkline(id="train-loss")
                yield ImagePreview("the first preview comes after a few steps", id="train-preview")
            yield Static("", id="job-status")

    def show_job(self, view: JobView) -> None:
        super().show_job(view)
        stage = view.stage if view.stage in SHOWN_HERE else "train"
        progress = view.progress.get(stage)
        panel = self.query_one(ProgressPanel)
        panel.unit = stage_info(stage).unit
        title = stage_info(stage).title
        if stage == "train" and view.last_checkpoint is not None:
            title += f"  (last checkpoint: step {view.last_checkpoint})"
            if progress is not None and progress.done < view.last_checkpoint:
                # Progress lines are throttled; the checkpoint written on stop is the newer count.
                progress = dataclasses.replace(progress, done=view.last_checkpoint)
        starting = progress is None and view.alive
        live = view.alive and view.state.status == "running"
        panel.show(title, progress, WAITING.get(stage, "starting…") if starting else "", live=live)
        self.query_one(LossSparkline).show(list(view.losses))
        sample = view.preview
        if sample is not None and sample.path != self._preview_path:
            self._preview_path = sample.path
            if sample.stage == "train":
                caption = f"step {sample.step}: {sample.label}" if sample.step is not None else sample.label
            else:
                caption = f"a class image: {sample.label}"
            self.query_one(ImagePreview).show(sample.path, caption)
