"""Welcome: what ioncannon does, and every job in the work dir, newest first, to watch, resume, open or set aside."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ioncannon.job.printable import printable
from ioncannon.tui.dialogs.choice import Choice, ChoiceDialog
from ioncannon.tui.joblist import job_row, key, state_panel
from ioncannon.tui.screens.base import DEMO_NOTE, STEP_TITLES, WizardScreen
from ioncannon.tui.wizard import SETUP_STEPS, Step, job_action

if TYPE_CHECKING:
    from ioncannon.job.workdir import JobSummary

INTRO = (
    "Pick 8–20 photos of one person, pet or thing; check them, name the subject, pick the styles and "
    "confirm the GPU plan. Training and generation run on their own: close this terminal any time and "
    "type [b]ioncannon[/b] to come back."
)
NEW_ROW = "new"


class WelcomeScreen(WizardScreen):
    """The first screen: a new job (or the setup under way) on the first row, then every job, newest first."""

    STEP = Step.WELCOME
    HELP_EXTRA = (("↑ ↓", "pick the first row (a new job, or the setup under way) or a job"),)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "primary", "Go"),
        Binding("n", "new_job", "New job"),
        Binding("a", "attach", "Attach"),
        Binding("r", "resume", "Resume"),
        Binding("v", "view", "View"),
        Binding("s", "archive", "Set aside"),
        Binding("d", "delete", "Delete"),
        Binding("x", "start_over", "Start over"),
        Binding("ctrl+n", "next", "Next", show=False),
    ]

    def __init__(self, jobs: list[JobSummary]) -> None:
        super().__init__()
        self.jobs = jobs  # newest first; a job whose job.json can't be read is listed too, never skipped

    # ------------------------------------------------------------------ what is offered

    @property
    def unfinished(self) -> JobSummary | None:
        """The job enter offers when welcome opens: one that runs, else the newest to resume (never a failed one)."""
        mine = [j for j in self.jobs if j.spec is not None and (not self.wizard.demo or j.spec.demo)]
        actions = [(job_action(j.state.status, j.alive), j) for j in mine]
        return next((j for a, j in actions if a == "attach"), None) or next((j for a, j in actions if a == "resume"),
                                                                            None)

    @property
    def selected(self) -> JobSummary | None:
        """The job on the highlighted row; None on the first row (a new job)."""
        try:
            index = self.query_one("#welcome-jobs", OptionList).highlighted
        except Exception:  # not composed yet
            return self.unfinished
        if index is None or index == 0:
            return None
        return self.jobs[index - 1]

    @property
    def action(self) -> str:
        """What enter does on the highlighted row."""
        job = self.selected
        if job is None:
            return NEW_ROW
        if job.spec is None:
            return "none"
        return job_action(job.state.status, job.alive)

    # ------------------------------------------------------------------ layout

    def compose_body(self) -> ComposeResult:
        with Vertical(id="welcome-body"):
            yield Static("[b]Your photos in; a DreamBooth-trained model and finished images out.[/b]",
                         id="welcome-lead")
            yield Static(INTRO, id="welcome-intro")
            if self.wizard.demo:
                yield Static(f"{DEMO_NOTE}: a new job here uses sample photos of a made-up subject and runs every "
                             "stage for real on the CPU in a few minutes; its pictures are noise.", id="welcome-demo")
            options = [Option(self._new_row(), id=NEW_ROW)] + [Option(job_row(j)) for j in self.jobs]
            yield OptionList(*options, id="welcome-jobs")
            yield Static(id="welcome-job")
            yield Static(self._answers_line(), id="welcome-answers")

    def on_mount(self) -> None:
        jobs = self.query_one("#welcome-jobs", OptionList)
        default = self.unfinished
        jobs.highlighted = 0 if default is None else self.jobs.index(default) + 1
        jobs.border_title = self._list_title()
        jobs.focus()
        self._show_selected()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Say what the highlighted row holds and which keys act on it."""
        self._show_selected()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter on a row does its first offer."""
        self.action_primary()

    def _list_title(self) -> str:
        count = len(self.jobs)
        if not count:
            return "no jobs in this work dir yet"
        return f"{count} job{'s' if count != 1 else ''} in this work dir, newest first"

    def _show_selected(self) -> None:
        self.query_one("#welcome-job", Static).update(self._job_panel())
        self.refresh_bindings()

    def _setup_step(self) -> Step | None:
        """The setup step the saved answers reached, when they are worth carrying on."""
        step = Step.parse(self.session.step)
        if step in SETUP_STEPS and self.wizard.has_answers() and self.session.job_name is None:
            return step
        return None

    def _newest_finished(self) -> JobSummary | None:
        return next((j for j in self.jobs if j.spec is not None and j.state.finished), None)

    def _new_row(self) -> Text:
        step = self._setup_step()
        if step is not None:
            return Text.assemble(("+ ", "bold green"), f"carry on setting up: {STEP_TITLES[step]}")
        return Text.assemble(("+ ", "bold green"), "a new job: start with your photos")

    def _answers_line(self) -> Text:
        """What a new job would start from, so a stray answer saved last time is seen (and can be dropped)."""
        session = self.session
        if not self.wizard.has_answers():
            return Text()
        subject = " ".join(w for w in (session.identifier, session.class_name) if w) or "not named yet"
        text = Text("Saved answers: ", style="dim")
        text.append(f"photos {session.photos_dir or 'not picked yet'} · subject {subject}")
        text.append("   ")
        text.append(key("x"))
        text.append(" restores the demo's answers" if self.wizard.demo else " starts over without them")
        return text

    def _job_panel(self) -> Text:
        job = self.selected
        if job is None:
            text = Text.assemble(key("enter"), " ")
            step = self._setup_step()
            text.append(f"carry on setting up where you left off ({STEP_TITLES[step]})" if step is not None
                        else "start a new job with your photos")
            newest = self._newest_finished()
            if newest is not None:
                text.append("\n")
                text.append_text(key("v"))
                text.append(" open the newest finished job, ")
                text.append(printable(newest.name), style="bold")
            if self.jobs:
                text.append("\n↑ ↓ pick a job above to watch, resume, open or set aside it.", style="dim")
            return text
        if job.spec is None:
            text = Text(f"Job {printable(job.name)} can't be read: {printable(job.problem)}. ", style="yellow")
            text.append(f"`ioncannon status {job.name}` says what to do; `ioncannon wipe {job.name}` removes "
                        "its copies of the subject; ")
            text.append_text(key("d"))
            text.append(" deletes it.")
            return text
        return state_panel(job, self.wizard.clock())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show only the keys that act on the highlighted row."""
        job, offer = self.selected, self.action
        if action == "attach":
            return offer == "attach"
        if action == "view":
            return offer == "open" or (job is None and self._newest_finished() is not None)
        if action == "resume":
            return offer == "resume" or (offer == "open" and job is not None and job.state.status == "failed")
        if action in ("archive", "delete"):
            return job is not None and offer != "attach"
        if action == "start_over":
            return self.wizard.has_answers()
        return action != "back"

    # ------------------------------------------------------------------ what the keys do

    def action_primary(self) -> None:
        """Do the highlighted row's first offer: start or carry on, attach, resume, or open."""
        offer = self.action
        if offer == "attach":
            self.action_attach()
        elif offer == "resume":
            self.action_resume()
        elif offer == "open":
            self.action_view()
        elif offer == NEW_ROW:
            self.action_next()

    def action_attach(self) -> None:
        """Watch the running job."""
        job = self.selected
        if job is not None and job.spec is not None:
            self.wizard.attach(job.paths, job.spec)

    def action_resume(self) -> None:
        """Restart the job's runner; it skips finished stages and resumes training from its checkpoint."""
        job = self.selected
        if job is not None and job.spec is not None:
            self.wizard.resume(job.paths, job.spec)

    def action_view(self) -> None:
        """Open a finished or failed job to read (nothing runs); on the first row, the newest finished job."""
        job = self.selected or self._newest_finished()
        if job is not None and job.spec is not None:
            self.wizard.attach(job.paths, job.spec)

    def action_new_job(self) -> None:
        """Leave the listed jobs alone and set up a new one."""
        self.wizard.start_new_job()

    def action_next(self) -> None:
        """Carry on with the setup under way, or start a new job."""
        step = self._setup_step()
        if step is not None:
            self.wizard.go(step)
        else:
            self.wizard.start_new_job()

    def action_archive(self) -> None:
        """Move the highlighted job to the work dir's archive folder, once confirmed."""
        job = self.selected
        if job is None:
            return
        from ioncannon.job.workdir import ARCHIVE_DIR

        body = (f"Job {job.name} moves to {self.wizard.workdir / ARCHIVE_DIR}/, whole: nothing is deleted, and "
                "it leaves this list and `ioncannon status`. Move it back to list it again.")
        self.app.push_screen(
            ChoiceDialog(f"Set {job.name} aside?", body,
                         [Choice("enter", "archive it", "archive"), Choice("escape", "keep it here", "keep")]),
            lambda answer: self._set_aside(job, answer),
        )

    def action_delete(self) -> None:
        """Delete the highlighted job's folder, once confirmed with y."""
        job = self.selected
        if job is None:
            return
        photos = f" Your photo folder {job.spec.photos_dir} is not touched." if job.spec is not None else ""
        body = (f"Everything in {job.paths.root} goes for good: its copies of your photos, checkpoints, trained "
                f"models and images.{photos}")
        self.app.push_screen(
            ChoiceDialog(f"Delete {job.name}?", body,
                         [Choice("y", "delete it", "delete"), Choice("escape", "keep it", "keep")]),
            lambda answer: self._set_aside(job, answer),
        )

    def _set_aside(self, job: JobSummary, answer: str | None) -> None:
        from ioncannon.job.workdir import WorkdirError, archive_job, delete_job, list_jobs

        if answer not in ("archive", "delete"):
            return
        try:
            if answer == "archive":
                where = archive_job(self.wizard.workdir, job)
                self.notify(f"Job {job.name} is archived in {where}.")
            else:
                delete_job(job)
                self.notify(f"Job {job.name} is deleted.")
        except WorkdirError as exc:
            self.notify(str(exc), severity="error", timeout=8)
        self.jobs = list_jobs(self.wizard.workdir)
        self._reload()

    def _reload(self) -> None:
        """Rebuild the list after a job left it or the answers changed."""
        jobs = self.query_one("#welcome-jobs", OptionList)
        jobs.clear_options()
        jobs.add_options([Option(self._new_row(), id=NEW_ROW)] + [Option(job_row(j)) for j in self.jobs])
        jobs.highlighted = 0
        jobs.border_title = self._list_title()
        self.query_one("#welcome-answers", Static).update(self._answers_line())
        self._show_selected()

    def action_start_over(self) -> None:
        """Forget the saved answers, once confirmed (the demo gets its sample photos and subject back)."""
        if not self.wizard.has_answers():
            return
        what = "puts the demo's sample photos and subject back" if self.wizard.demo else "can't be undone"
        self.app.push_screen(
            ChoiceDialog("Forget your answers?",
                         f"The photo folder, subject, crops, styles and run length you picked are forgotten; this "
                         f"{what}. Jobs already made stay as they are.",
                         [Choice("y", "forget them", "forget"), Choice("escape", "keep them", "keep")]),
            self._start_over,
        )

    def _start_over(self, answer: str | None) -> None:
        if answer != "forget":
            return
        self.wizard.start_over()
        self._reload()
        self.notify("The demo's answers are back." if self.wizard.demo else "Saved answers cleared.")
