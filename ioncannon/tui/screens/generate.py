"""Generating: export, then per-prompt progress and the collages as they finish, paged with the keyboard."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from ioncannon.job.stages import STAGES
from ioncannon.job.stages import stage as stage_info
from ioncannon.tui import gallery
from ioncannon.tui.jobview import JobView
from ioncannon.tui.screens.job import JobScreen
from ioncannon.tui.widgets.preview import ImagePreview
from ioncannon.tui.widgets.progress import ProgressPanel, StageList
from ioncannon.tui.wizard import Step

MAX_PROMPT_ROWS = 8
SHOWN_HERE = frozenset(s.name for s in STAGES if s.screen == "generate")


class GenerateScreen(JobScreen):
    """Step 6: from the trained model to finished images."""

    STEP = Step.GENERATE
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,p", "page(-1)", "Prev"),
        Binding("right,n", "page(1)", "Next"),
        Binding("down,j", "step(1)", "Images"),
        Binding("up,k", "step(-1)", "Images", show=False),
        Binding("s", "star", "Star"),
        Binding("enter", "next", "Finish"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page = -1  # -1 follows the newest collage; paging pins one
        self.image = -1  # -1 shows the collage itself; 0.. one of the images it was made of
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
        finished = view.state.status == "finished"
        # Once finished, the prompt pack's own bar (full), not the last stage's (packaging shows no count).
        stage = "generate" if finished or view.stage not in SHOWN_HERE else view.stage
        progress = view.progress.get(stage)
        current = f"  now: {progress.label}" if progress is not None and progress.label and stage == "generate" else ""
        title = stage_info(stage).title + ("  ✓ done" if finished else current)
        live = view.alive and view.state.status == "running"
        self.query_one(ProgressPanel).show(title, progress, live=live)
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

    def status_text(self, view: JobView) -> Text:
        if view.state.status == "finished":
            return Text.assemble(
                ("✔ All images are made. ", "bold green"),
                "Page them here (←/→, ↓) or press ", (" enter ", "bold reverse"),
                " for the finish screen: files, download, bundle; g there shows these images again.",
            )
        return super().status_text(view)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """enter (Finish) only once the job has finished."""
        if action == "next":
            return self.wizard.job_view.state.status == "finished"
        return super().check_action(action, parameters)

    def action_next(self) -> None:
        """Go on to the finish screen once every image is made."""
        if self.wizard.job_view.state.status == "finished":
            self.wizard.go(Step.FINISH)

    def shown(self) -> gallery.Shown | None:
        """The collage (or one of its images) the preview is on."""
        collages = self.wizard.job_view.collages
        if not collages:
            return None
        index = len(collages) - 1 if self.page < 0 else min(self.page, len(collages) - 1)
        collage = collages[index]
        images = gallery.images_of(collage.path) if self.image >= 0 else []
        image_index = min(self.image, len(images) - 1)
        image = images[image_index] if image_index >= 0 else None
        return gallery.Shown(collage.keyword, Path(collage.path), image, index, len(collages), image_index,
                             len(images))

    def _show_collage(self, view: JobView, force: bool = False) -> None:
        shown = self.shown()
        if shown is None or self.wizard.job is None:
            return
        stars = gallery.star_caption(self.wizard.job.paths, shown)
        key = f"{shown.path}#{shown.index}/{shown.count}{stars}"
        if key == self._shown and not force:
            return
        self._shown = key
        where = f"{shown.index + 1}/{shown.count} {shown.keyword}"
        if shown.image is not None:
            where += f" · image {shown.image_index + 1}/{shown.image_count}"
        caption = f"{where}  {stars}".rstrip()
        self.query_one(ImagePreview).show(shown.path, caption)

    def action_page(self, delta: int) -> None:
        """Show the previous or next finished collage."""
        collages = self.wizard.job_view.collages
        if not collages:
            return
        current = len(collages) - 1 if self.page < 0 else self.page
        self.page = max(0, min(len(collages) - 1, current + delta))
        self.image = -1
        self._show_collage(self.wizard.job_view)

    def action_step(self, delta: int) -> None:
        """Step from the collage through the images it was made of, and back."""
        shown = self.shown()
        if shown is None:
            return
        if self.page < 0:
            self.page = shown.index  # looking at images pins the collage: a new one must not pull the view away
        count = len(gallery.images_of(shown.collage))
        self.image = max(-1, min(count - 1, shown.image_index + delta))
        self._show_collage(self.wizard.job_view)

    def action_star(self) -> None:
        """Star the image on show, or all images of the collage on show, for the starred-only bundle."""
        shown = self.shown()
        if shown is None or self.wizard.job is None:
            return
        starred = gallery.toggle(self.wizard.job.paths, shown)
        if starred is None:
            self.notify("The contact sheet has no images of its own: star a prompt's collage or images.")
            return
        self._show_collage(self.wizard.job_view, force=True)
