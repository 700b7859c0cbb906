"""Generating: export, then per-prompt progress and the collages as they finish, paged with the keyboard."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from ioncannon.tui.jobview import JobView
from ioncannon.tui.screens.job import JobScreen
from ioncannon.tui.widgets.preview import ImagePreview
from ioncannon.tui.widgets.progress import ProgressPanel, StageList
from ioncannon.tui.wizard import Step

MAX_PROMPT_ROWS = 8
STAGE_TITLES = {
    "export": "Exporting the model (fp16 .safetensors and diffusers folder)",
    "generate": "Generating the prompt pack",
    "package": "Packaging the results",
}


class GenerateScreen(JobScreen):
    """Step 6: from the trained model to finished images."""

    STEP = Step.GENERATE
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,p", "page(-1)", "Prev collage"),
        Binding("right,n", "page(1)", "Next collage"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page = -1  # -1 follows the newest collage; paging pins one
        self._shown = ""

    def compose_body(self) -> ComposeResult:
        with Vertical(id="job-body"):
            yield StageList(id="job-stages")
            yield ProgressPanel(unit="images", id="job-progress")
            with Horizontal(id="generate-panes"):
                yield ImagePreview("collages appear here as each prompt finishes", id="generate-preview")
                yield Static("", id="generate-prompts")
            yield Static("", id="job-status")

    def show_job(self, view: JobView) -> None:
        super().show_job(view)
        stage = view.stage if view.stage in STAGE_TITLES else "generate"
        progress = view.progress.get(stage)
        current = f"  now: {progress.label}" if progress is not None and progress.label and stage == "generate" else ""
        self.query_one(ProgressPanel).show(STAGE_TITLES[stage] + current, progress)
        self.query_one("#generate-prompts", Static).update(self._prompt_list(view))
        self._show_collage(view)

    def _prompt_list(self, view: JobView) -> Text:
        done = {c.keyword for c in view.collages}
        text = Text()
        text.append(f"prompts ({len(done & set(view.generated))} done)\n", style="bold")
        rows = list(view.generated.items())[-MAX_PROMPT_ROWS:]
        for label, count in rows:
            finished = label in done
            text.append("✓ " if finished else "▶ ", style="green" if finished else "yellow")
            text.append(f"{label} ", style="" if finished else "bold")
            text.append(f"{count} image{'s' if count != 1 else ''}\n", style="dim")
        if not view.generated:
            text.append("waiting for the first images…", style="dim")
        return text

    def _show_collage(self, view: JobView) -> None:
        collages = view.collages
        if not collages:
            return
        index = len(collages) - 1 if self.page < 0 else min(self.page, len(collages) - 1)
        collage = collages[index]
        key = f"{collage.path}#{index}/{len(collages)}"
        if key == self._shown:
            return
        self._shown = key
        caption = f"{index + 1}/{len(collages)} {collage.keyword}  (←/→ page)"
        self.query_one(ImagePreview).show(collage.path, caption)

    def action_page(self, delta: int) -> None:
        """Show the previous or next finished collage."""
        collages = self.wizard.job_view.collages
        if not collages:
            return
        current = len(collages) - 1 if self.page < 0 else self.page
        self.page = max(0, min(len(collages) - 1, current + delta))
        self._show_collage(self.wizard.job_view)
