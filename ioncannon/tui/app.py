"""IonCannonApp: the wizard's screens, the handle on the job, and the one event pump that feeds them."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState, get_current_worker

from ioncannon.job import handle
from ioncannon.job.errors import JobError
from ioncannon.job.lock import RunnerBusy
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.job.state import is_live, read_state
from ioncannon.tui.dialogs.choice import Choice, ChoiceDialog, ErrorDialog
from ioncannon.tui.dialogs.help import HELP_BINDING, HelpDialog, key_rows
from ioncannon.tui.feed import JobFeed
from ioncannon.tui.jobview import JobView
from ioncannon.tui.screens.base import WizardScreen
from ioncannon.tui.screens.check import CheckScreen
from ioncannon.tui.screens.generate import GenerateScreen
from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.screens.job import JobScreen
from ioncannon.tui.screens.photos import PhotosScreen
from ioncannon.tui.screens.prompts import PromptsScreen
from ioncannon.tui.screens.subject import SubjectScreen
from ioncannon.tui.screens.train import TrainScreen
from ioncannon.tui.screens.welcome import WelcomeScreen
from ioncannon.tui.session import SessionStore, WizardSession
from ioncannon.tui.tokenizer import TokenizerCheck
from ioncannon.tui.wizard import (
    JOB_STEPS,
    Step,
    follow_job,
    job_step,
    needs_a_look,
    next_step,
    opening_step,
    previous_step,
)

if TYPE_CHECKING:
    from ioncannon.job.plan.box import HardwareInfo

log = logging.getLogger("ioncannon.tui")


class JobChanged(Message):
    """The pump put news in the feed (at most one of these is ever waiting)."""


class TokenizerChecked(Message):
    """The base model's tokenizer was found, or not (and why)."""

    def __init__(self, key: str, check: TokenizerCheck) -> None:
        super().__init__()
        self.key, self.check = key, check


@dataclass
class JobLink:
    """The job this app watches."""

    paths: JobPaths
    spec: JobSpec


class IonCannonApp(App[None]):
    """The keyboard wizard. It never runs the work itself: it starts or attaches to a detached runner."""

    CSS_PATH = "ioncannon.tcss"
    TITLE = "ioncannon"
    ENABLE_COMMAND_PALETTE = False
    PUMP_INTERVAL = 0.2
    # ctrl+q is the only quit key, on every screen: a bare letter would type into an answer box on some
    # screens and quit on others. Not a priority binding, so a job screen can label it "Leave/stop".
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "request_quit", "Quit"),
        HELP_BINDING,
    ]

    def __init__(
        self, workdir: Path, demo: bool = False, *,
        hardware_probe: Callable[[Path], HardwareInfo] | None = None,
        clock: Callable[[], float] = time.time,
        proc: Path = Path("/proc"),
        come_back: str = "ioncannon",
    ) -> None:
        super().__init__()
        self.come_back = come_back  # the command that brings the person back here, said when they leave
        self.workdir = Path(workdir)
        self.demo = demo
        self.store = SessionStore.open(self.workdir, demo)
        self.feed = JobFeed()
        self.job_view = JobView()
        self.job: JobLink | None = None
        self.clock = clock
        self.proc = proc  # where the cost meter reads the box's uptime
        self._hardware_probe = hardware_probe
        self._box: HardwareInfo | None = None  # the last probe's answer
        self._tokenizers: dict[str, TokenizerCheck] = {}  # base model -> its CLIP tokenizer, or why there is none
        self._tokenizers_pending: set[str] = set()
        # Workers that import torch/diffusers/transformers take turns: diffusers' lazy imports are not
        # safe from two threads at once (a half-initialised module raises ImportError).
        self.engine_import_lock = threading.RLock()

    # ------------------------------------------------------------------ facts screens ask for

    def training_resolution(self) -> int:
        """The size the job will train at, as the planner decides it for the answers so far and this box: the
        check step scans and previews the photos at it. Call from a worker: the first call probes the box."""
        from ioncannon.job.plan.planner import decide_size
        from ioncannon.tui.request import wizard_request

        with self.engine_import_lock:
            if self._box is None:
                self._box = self.probe_hardware()
        request = wizard_request(self.store.session, self.workdir, "check", demo=self.demo)
        return decide_size(request, self._box)[1]

    def hourly_price(self) -> float | None:
        if self.job is not None and self.job.spec.hourly_price is not None:
            return self.job.spec.hourly_price
        return self.store.session.hourly_price

    def meter_started_at(self) -> float | None:
        """When the watched job first started; None while setting up (the meter then shows the box's time)."""
        return self.job_view.state.started_at if self.job is not None else None

    def probe_hardware(self) -> HardwareInfo:
        """GPU, disk and RAM of this box (slow the first time: it imports torch). Call from a worker."""
        if self._hardware_probe is not None:
            box = self._hardware_probe(self.workdir)
        else:
            from ioncannon.engine.hardware import probe

            box = probe(self.workdir, demo=self.demo)
        self._box = box
        return box

    def check_tokenizer(self) -> None:
        """Find the base model's CLIP tokenizer for the identifier linter; the answer comes as TokenizerChecked.

        It may wait on the hub, so it runs on a daemon thread of its own, not a worker: Python waits for
        worker threads at exit, and quitting must never wait on the network.
        """
        key = "demo" if self.demo else self.store.session.base_model.strip()
        if key in self._tokenizers:
            self.post_message(TokenizerChecked(key, self._tokenizers[key]))
            return
        if key in self._tokenizers_pending:
            return
        self._tokenizers_pending.add(key)
        threading.Thread(target=self._find_tokenizer, args=(key,), name="ioncannon-tokenizer", daemon=True).start()

    def _find_tokenizer(self, key: str) -> None:
        from ioncannon.tui.tokenizer import TokenizerCheck, find_clip_tokenizer, load_clip_tokenizer

        try:
            if self.demo:
                with self.engine_import_lock:
                    from ioncannon.engine.demo import ensure_demo_model

                    found = load_clip_tokenizer(str(ensure_demo_model(self.workdir)), download=False)
                check = TokenizerCheck(found, "" if found is not None else "the demo model has no tokenizer")
            else:
                check = find_clip_tokenizer(key)
        except Exception as exc:  # a missing tokenizer only costs the token count
            log.debug("no tokenizer for the linter", exc_info=True)
            check = TokenizerCheck(None, f"the tokenizer could not be loaded ({type(exc).__name__})")
        try:
            self.post_message(TokenizerChecked(key, check))  # thread-safe
        except RuntimeError:
            pass  # the app has gone (its loop is closed): nobody is waiting for the answer

    def on_tokenizer_checked(self, message: TokenizerChecked) -> None:
        """Keep the answer for this base model and hand it to the subject screen, if it is still up."""
        self._tokenizers[message.key] = message.check
        self._tokenizers_pending.discard(message.key)
        screen = self.step_screen()
        # a subject screen pushed a moment ago asks again on its mount and is answered from what is kept here
        if screen is not None and screen.is_mounted and hasattr(screen, "tokenizer_checked"):
            screen.tokenizer_checked(message.key, message.check)

    # ------------------------------------------------------------------ moving between steps

    def on_mount(self) -> None:
        if self.demo:
            self._prefill_demo()
        from ioncannon.job.workdir import list_jobs

        jobs = list_jobs(self.workdir)  # one scan: each job's lock is probed and its files read
        news = any(needs_a_look(j.state.status) and j.spec is not None and (not self.demo or j.spec.demo)
                   for j in jobs)
        step = opening_step(Step.parse(self.store.session.step), news)
        self.push_screen(WelcomeScreen(jobs) if step is Step.WELCOME else self.make_screen(step))

    def make_screen(self, step: Step) -> Screen[None]:
        if step is Step.WELCOME:
            return self._welcome()
        if step is Step.FINISH and self.job is not None:
            from ioncannon.tui.screens.finish import FinishScreen

            return FinishScreen(self.job.paths, self.job.spec)
        screens: dict[Step, type[WizardScreen]] = {
            Step.PHOTOS: PhotosScreen,
            Step.CHECK: CheckScreen,
            Step.SUBJECT: SubjectScreen,
            Step.PROMPTS: PromptsScreen,
            Step.HARDWARE: HardwareScreen,
            Step.TRAIN: TrainScreen,
            Step.GENERATE: GenerateScreen,
        }
        return screens.get(step, PhotosScreen)()

    def _welcome(self) -> WelcomeScreen:
        from ioncannon.job.workdir import list_jobs

        return WelcomeScreen(list_jobs(self.workdir))

    def go(self, step: Step) -> None:
        """Show `step`, remembering it so a dropped link reopens here."""
        self.store.update(step=step.value)
        if self.store.save_error:
            self.notify(self.store.save_error + ". A dropped link will lose them; try --workdir DIR.",
                        severity="warning", timeout=8)
        self.switch_screen(self.make_screen(step))

    def go_next(self, step: Step) -> None:
        target = next_step(step)
        if target is not None:
            self.go(target)

    def go_back(self, step: Step) -> None:
        target = previous_step(step)
        if target is not None:
            self.go(target)

    def start_new_job(self) -> None:
        """Set up a new job; answers typed once (price, base model) are kept."""
        session = self.store.session
        if session.job_name is not None:
            self.store.replace(session.for_new_job())
        self.job, self.job_view = None, JobView()
        if self.demo:
            self._prefill_demo()
        self.go(Step.PHOTOS)

    def start_over(self) -> None:
        """Forget the saved answers; the demo gets its own photos and subject back."""
        self.store.start_over()
        if self.demo:
            self._prefill_demo()

    def has_answers(self) -> bool:
        """Whether the saved answers differ from a fresh start (the demo's own, in the demo)."""
        start = WizardSession(demo=self.demo)
        if self.demo:
            start = dataclasses.replace(start, **self._demo_answers())
        return self.store.session.differs_from(start)

    @staticmethod
    def _demo_answers() -> dict[str, object]:
        from ioncannon.job.plan.demo import DEMO_CLASS, DEMO_IDENTIFIER, demo_photos_dir
        from ioncannon.tui.session import DEMO_RUN_LENGTH

        return {"photos_dir": str(demo_photos_dir()), "identifier": DEMO_IDENTIFIER, "class_choice": DEMO_CLASS,
                "run_length": DEMO_RUN_LENGTH}

    def _prefill_demo(self) -> None:
        """The demo's answers: its sample photos and subject; every screen still shows them."""
        session, demo = self.store.session, self._demo_answers()
        changes: dict[str, object] = {}
        if not session.photos_dir:
            changes["photos_dir"] = demo["photos_dir"]
        if not session.identifier:
            changes.update(identifier=demo["identifier"], class_choice=demo["class_choice"],
                           run_length=demo["run_length"])
        if changes:
            self.store.update(**changes)

    # ------------------------------------------------------------------ the job

    def attach(self, paths: JobPaths, spec: JobSpec) -> None:
        """Watch this job: read where it is now, show its screen and start pumping its events."""
        self.job = JobLink(paths, spec)
        self.job_view, self.feed = JobView(), JobFeed()
        self.store.update(job_name=spec.name)
        self.job_view.update_state(read_state(paths), handle.is_alive(paths))
        self.go(job_step(self.job_view.state.status, self.job_view.state.stage))
        self.pump(paths)

    def resume(self, paths: JobPaths, spec: JobSpec) -> None:
        """Restart a job's runner (finished stages are skipped; training resumes from its checkpoint)."""
        self._start_runner(paths, spec)

    @work(thread=True, exclusive=True, group="runner", exit_on_error=False)
    def _start_runner(self, paths: JobPaths, spec: JobSpec) -> None:
        try:
            handle.start(paths, self.workdir)
        except RunnerBusy:
            pass  # someone (another terminal) restarted it first: just watch
        self.call_from_thread(self.attach, paths, spec)

    def stop_job(self) -> None:
        """Ask the runner to checkpoint and stop; the screen shows it stopping, then stopped."""
        if self.job is None:
            return
        try:
            asked = handle.stop(self.job.paths)
        except JobError as exc:  # locked by a process that is not provably the runner: nothing was signalled
            self.notify(str(exc), severity="error")
            return
        if not asked:
            self.notify("The runner had already exited.", severity="warning")

    @work(thread=True, exclusive=True, group="pump", exit_on_error=False)
    def pump(self, paths: JobPaths) -> None:
        """The one reader of the job's files: tails events.jsonl, reads state.json, wakes the UI coalesced."""
        worker = get_current_worker()
        feed = self.feed
        for news in handle.follow(paths, from_start=True, interval_s=self.PUMP_INTERVAL,
                                  cancelled=lambda: worker.is_cancelled):
            if feed.offer(news.events, news.state, news.alive):
                self.post_message(JobChanged())

    def on_job_changed(self, message: JobChanged) -> None:
        """Fold the news into the job view and let the job screen redraw once."""
        batch = self.feed.take()
        self.job_view.apply(batch.events)
        self.job_view.update_state(batch.state, batch.alive)
        screen = self.step_screen()
        # a job screen pushed a moment ago (attach, resume) is not mounted until the next refresh; its own mount
        # draws the view as it is then, so news in between is not drawn into widgets that do not exist yet
        if isinstance(screen, JobScreen) and screen.is_mounted:
            screen.show_job(self.job_view)
        self.catch_up()

    def catch_up(self) -> None:
        """Move a job screen on when the job has moved on (deferred while a dialog is open)."""
        screen = self.step_screen()
        if screen is None or screen.STEP not in JOB_STEPS or isinstance(self.screen, ModalScreen):
            return
        target = follow_job(screen.STEP, self.job_view.state.status, self.job_view.stage)
        # go() switches screens on the next refresh: news arriving before that must not switch twice
        if target is not screen.STEP and target.value != self.store.session.step:
            self.go(target)

    def step_screen(self) -> WizardScreen | None:
        """The wizard screen under any open dialog."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, WizardScreen):
                return screen
        return None

    # ------------------------------------------------------------------ errors and quitting

    def show_error(self, message: str, hint: str = "", exc: BaseException | None = None) -> None:
        """A dialog for the person; the traceback goes to the log file, never the screen."""
        if exc is not None:
            self._log_traceback(exc)
            hint = (hint + "\n" if hint else "") + f"Details: {self.log_file}"
        self.push_screen(ErrorDialog(message, hint))

    @property
    def log_file(self) -> Path:
        return self.workdir / "ioncannon-tui.log"

    def _log_traceback(self, exc: BaseException) -> None:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a", encoding="utf-8") as fh:
                fh.write(time.strftime("%Y-%m-%d %H:%M:%S ") + "".join(traceback.format_exception(exc)) + "\n")
        except OSError:
            log.exception("could not write the TUI log")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker of the app that crashed opens an error dialog instead of taking the app down."""
        self.report_worker(event)

    def report_worker(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.show_error(f"{event.worker.name or 'background work'} failed: {error}", exc=error)

    def action_help(self) -> None:
        """List every key of this screen, the ones the footer leaves out too."""
        screen = self.screen
        if isinstance(screen, ModalScreen):
            return  # a dialog names its own keys
        title = getattr(screen, "HELP_TITLE", "") or screen.__class__.__name__.removesuffix("Screen")
        self.push_screen(HelpDialog(title, key_rows(screen), getattr(screen, "HELP_EXTRA", ())))

    def action_request_quit(self) -> None:
        """Quit; while the job runs, ask first and say it keeps running."""
        screen = self.step_screen()
        if isinstance(screen, JobScreen):
            screen.action_leave()
            return
        if self.job is not None and is_live(self.job_view.state.status, self.job_view.alive):
            self.push_screen(
                ChoiceDialog("Quit?", f"The job keeps running on this machine. Type `{self.come_back}` to come back.",
                             [Choice("enter", "quit", "quit"), Choice("escape", "stay", "stay")]),
                lambda answer: self.leave() if answer == "quit" else None,
            )
            return
        self.leave()

    def leave(self) -> None:
        """Exit with a parting line: what goes on without the wizard, and how to come back."""
        self.exit(message=self.parting_words())

    def parting_words(self) -> str:
        if self.job is None:
            if self.has_answers():
                return f"Your answers are saved. Type `{self.come_back}` to carry on where you left off."
            return f"Type `{self.come_back}` to start again."
        name = self.job.spec.name
        if is_live(self.job_view.state.status, self.job_view.alive):
            return (f"Job {name} keeps running on this machine. Type `{self.come_back}` to watch it again; "
                    f"closing the terminal or the SSH link does not stop it.")
        if self.job_view.state.status == "finished":
            return f"Job {name} is finished; its files are in {self.job.paths.root}. `{self.come_back}` shows them."
        return f"Job {name} is not running. Type `{self.come_back}` to resume it or start a new one."
