"""What the train and generate screens share: live job status, resume, and leave-or-stop on quit."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Static

from ioncannon.job.state import JobState, is_live, resume_promise
from ioncannon.tui.dialogs.choice import Choice, ChoiceDialog
from ioncannon.tui.jobview import JobView
from ioncannon.tui.screens.base import WizardScreen
from ioncannon.tui.widgets.meter import CostMeter
from ioncannon.tui.widgets.progress import StageList

LEVEL_STYLES = {"info": "", "warning": "yellow", "error": "bold red"}


class JobScreen(WizardScreen):
    """A screen that watches the job; `show_job` is called with every coalesced update."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", show=False),
        Binding("ctrl+n", "next", "Next", show=False),
        Binding("ctrl+q", "leave", "Leave/stop"),
        Binding("ctrl+c", "leave", "Leave/stop", show=False),
        Binding("r", "resume", "Resume"),
    ]

    def on_mount(self) -> None:
        self.show_job(self.wizard.job_view)

    def show_job(self, view: JobView) -> None:
        job = self.wizard.job
        no_class_images = job is not None and not job.spec.train.prior_preservation
        unused = frozenset({"class_images"}) if no_class_images else frozenset()
        self.query_one(StageList).show(view.stage_marks(unused))
        self.query_one("#job-status", Static).update(self.status_text(view))
        meter = self.query_one(CostMeter)
        if meter.job_started_at != view.state.started_at:
            meter.job_started_at = view.state.started_at
        self.refresh_bindings()

    def status_text(self, view: JobView) -> Text:
        state = view.state
        if view.failed is not None or state.status == "failed":
            message = view.failed.message if view.failed else state.message
            hint = view.failed.hint if view.failed else state.hint
            text = Text()
            text.append(f"✗ {message}", style="bold red")
            if hint:
                text.append(f"\n{hint}", style="red")
            text.append("  Press r to resume once it is fixed.", style="bold")
            return text
        if state.status == "stopping":
            return Text("Stopping: saving a checkpoint first…", style="bold yellow")
        if view.stopped is not None or state.status == "stopped":
            return Text(f"Stopped. Press r to resume: {self._promise(state)}.", style="bold yellow")
        if not view.alive and state.status in ("running", "new", "unknown"):
            return Text("The runner stopped without finishing (killed, or the machine restarted). "
                        f"Press r to restart it: {self._promise(state)}.", style="bold yellow")
        text = Text()
        for level, message in list(view.messages)[-2:]:
            if text:
                text.append("\n")
            text.append(message, style=LEVEL_STYLES.get(level, ""))
        return text

    def _promise(self, state: JobState) -> str:
        job = self.wizard.job
        return resume_promise(job.paths, state) if job is not None else "finished stages are kept"

    def resumable(self) -> bool:
        view = self.wizard.job_view
        return not view.alive and view.state.status != "finished"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Resume only shows when the runner is not running; with no runner, ctrl+q is the app's plain Quit."""
        if action == "resume":
            return self.resumable()
        if action == "leave":
            view = self.wizard.job_view
            return is_live(view.state.status, view.alive)
        return action not in ("back", "next")

    def action_resume(self) -> None:
        """Restart the job's runner: finished stages are skipped, training resumes from its checkpoint."""
        if self.resumable() and self.wizard.job is not None:
            self.wizard.resume(self.wizard.job.paths, self.wizard.job.spec)

    def action_leave(self) -> None:
        """Leave the screen: the job keeps running, or is stopped at a checkpoint."""
        if not self.wizard.job_view.alive:
            self.wizard.leave()
            return
        body = (
            "Leave: this screen closes and the job keeps running on this machine;\n"
            f"type `{self.wizard.come_back}` any time to watch it again.\n"
            "Stop: the job saves a checkpoint and stops; you can resume it later."
        )
        self.app.push_screen(
            ChoiceDialog("Leave or stop?", body, [
                Choice("l", "leave, keep it running", "leave"),
                Choice("s", "stop the job", "stop"),
                Choice("escape", "cancel", "cancel"),
            ]),
            self._left,
        )

    def _left(self, answer: str | None) -> None:
        if answer == "leave":
            self.wizard.leave()
            return
        if answer == "stop":
            self.wizard.stop_job()
        self.wizard.catch_up()  # the job may have finished while the question was open
