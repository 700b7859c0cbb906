"""Welcome: what ioncannon does in three lines, and attach / resume / start new for an unfinished job."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from ioncannon.job.stages import label as stage_label
from ioncannon.job.state import LIVE_STATUSES, resume_promise, shown_status
from ioncannon.job.units import duration
from ioncannon.tui.screens.base import DEMO_NOTE, WizardScreen
from ioncannon.tui.wizard import Step, resume_action

if TYPE_CHECKING:
    from ioncannon.job.workdir import JobSummary

INTRO = (
    "1. Pick a folder with 8–20 photos of one person, pet or thing.\n"
    "2. Check them, name the subject, pick the prompts, confirm the GPU plan.\n"
    "3. Training and generation run on their own: close this terminal any time\n"
    "   and type [b]ioncannon[/b] to come back."
)


class WelcomeScreen(WizardScreen):
    """The first screen; offers the unfinished job, if there is one."""

    STEP = Step.WELCOME
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "primary", "Continue"),
        Binding("a", "attach", "Attach"),
        Binding("r", "resume", "Resume"),
        Binding("n", "new_job", "Start new"),
        Binding("v", "view_finished", "View last job"),
        Binding("x", "start_over", "Start over"),
        Binding("ctrl+n", "next", "Next", show=False),
    ]

    def __init__(self, unfinished: JobSummary | None, finished: JobSummary | None = None,
                 damaged: list[JobSummary] | None = None) -> None:
        super().__init__()
        self.unfinished = unfinished
        self.finished = finished
        self.damaged = damaged or []  # jobs whose job.json can't be read: shown, never silently skipped

    def compose_body(self) -> ComposeResult:
        with Vertical(id="welcome-body"):
            yield Static(
                "[b]Your photos in; a DreamBooth-trained Stable Diffusion model and finished images out.[/b]",
                id="welcome-lead",
            )
            yield Static(INTRO, id="welcome-intro")
            if self.wizard.demo:
                yield Static(
                    f"{DEMO_NOTE}: sample photos of a made-up subject, every stage runs for real on the CPU "
                    "in a few minutes; the pictures are noise, the plumbing is real.",
                    id="welcome-demo",
                )
            yield Static(self._job_panel(), id="welcome-job")
            yield Static(self._answers_line(), id="welcome-answers")

    def _answers_line(self) -> Text:
        """What a new job would start from, so a stray answer saved last time is seen (and can be dropped)."""
        session = self.session
        if not self.wizard.has_answers():
            return Text()
        subject = " ".join(w for w in (session.identifier, session.class_name) if w) or "not named yet"
        text = Text("Saved answers: ", style="dim")
        text.append(f"photos {session.photos_dir or 'not picked yet'} · subject {subject}")
        text.append("   ")
        text.append(" x ", style="bold reverse")
        text.append(" restores the demo's answers" if self.wizard.demo else " starts over without them")
        return text

    @property
    def action(self) -> str:
        if self.unfinished is None:
            return "none"
        return resume_action(self.unfinished.state.status, self.unfinished.alive)

    def _job_panel(self) -> Text:
        text = self._unfinished_panel()
        for job in self.damaged[:2]:
            text.append(f"\nJob {job.name} can't be read: {job.problem}. ", style="yellow")
            text.append(f"`ioncannon status {job.name}` says what to do; `ioncannon wipe {job.name}` removes "
                        "its copies of the subject.")
        if len(self.damaged) > 2:
            text.append(f"\n{len(self.damaged) - 2} more jobs can't be read: `ioncannon status NAME` for each.",
                        style="yellow")
        return text

    def _unfinished_panel(self) -> Text:
        job = self.unfinished
        if job is None:
            text = Text("Press ")
            text.append(" enter ", style="bold reverse")
            text.append(" to start with your photos.")
            if self.finished is not None:
                text.append("\nLast finished job: ", style="dim")
                text.append(self.finished.name, style="bold")
                text.append("  (v: view its results)", style="dim")
            return text
        state = job.state
        text = Text()
        text.append("Unfinished job ", style="bold")
        text.append(job.name, style="bold cyan")
        text.append("\n")
        where = stage_label(state.stage) or "not started"
        if state.total:
            where += f" {state.done}/{state.total}"
        text.append(f"stage: {where} · {shown_status(state.status, job.alive)}")
        if state.elapsed_s:
            text.append(f" · ran {duration(state.elapsed_s)}")
        text.append("\n")
        if self.action == "attach":
            text.append("Its runner is working right now. ", style="green")
            text.append(" enter ", style="bold reverse")
            text.append(" / ")
            text.append(" a ", style="bold reverse")
            text.append(" attach and watch it    ")
        else:
            ago = ""
            if state.updated_at:
                ago = f" (last heard from {duration(max(0.0, self.wizard.clock() - state.updated_at))} ago)"
            if state.status in LIVE_STATUSES:
                text.append(f"Its runner stopped without finishing (killed, or the machine restarted){ago}.",
                            style="yellow")
            else:
                text.append(f"Nothing is running it now{ago}.", style="yellow")
            if state.status == "failed" and state.message:
                text.append(f"\nIt failed: {state.message}", style="red")
            elif state.status == "unknown":
                text.append(f"\nIts progress file can't be read ({state.message}); resuming rebuilds it from "
                            "the work on disk.", style="yellow")
            text.append("\n")
            text.append(" enter ", style="bold reverse")
            text.append(" / ")
            text.append(" r ", style="bold reverse")
            text.append(f" resume it: {resume_promise(job.paths, state)}    ")
        text.append("\n")
        text.append(" n ", style="bold reverse")
        text.append(" start a new job instead")
        return text

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show only the keys that make sense for what welcome offers."""
        if action == "attach":
            return self.action == "attach"
        if action == "resume":
            return self.action == "resume"
        if action == "new_job":
            return self.unfinished is not None
        if action == "view_finished":
            return self.unfinished is None and self.finished is not None
        if action == "start_over":
            return self.wizard.has_answers()
        return action != "back"

    def action_primary(self) -> None:
        """Do the recommended thing: attach, resume, or start."""
        if self.action == "attach":
            self.action_attach()
        elif self.action == "resume":
            self.action_resume()
        else:
            self.action_next()

    def action_attach(self) -> None:
        """Watch the running job."""
        if self.unfinished is not None and self.unfinished.spec is not None:
            self.wizard.attach(self.unfinished.paths, self.unfinished.spec)

    def action_resume(self) -> None:
        """Restart the job's runner; it skips finished stages and resumes training from its checkpoint."""
        if self.unfinished is not None and self.unfinished.spec is not None:
            self.wizard.resume(self.unfinished.paths, self.unfinished.spec)

    def action_new_job(self) -> None:
        """Leave the unfinished job alone and set up a new one."""
        self.wizard.start_new_job()

    def action_view_finished(self) -> None:
        """Open the summary of the last finished job."""
        if self.finished is not None and self.finished.spec is not None:
            self.wizard.attach(self.finished.paths, self.finished.spec)

    def action_start_over(self) -> None:
        """Forget the saved answers (the demo gets its sample photos and subject back)."""
        self.wizard.start_over()
        self.query_one("#welcome-answers", Static).update(self._answers_line())
        self.refresh_bindings()
        self.notify("The demo's answers are back." if self.wizard.demo else "Saved answers cleared.")

    def action_next(self) -> None:
        """Start setting up a job."""
        if self.unfinished is None:
            self.wizard.start_new_job()
