"""Hardware: what the box has, the plan that fits, time and cost; an explicit confirm starts the job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Static

from ioncannon.job.families import family_info
from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.box import HardwareInfo
from ioncannon.job.plan.memory import PlanChoice
from ioncannon.job.plan.planner import Plan, Problems, decide_family, plan_job
from ioncannon.job.plan.request import JobRequest
from ioncannon.job.prompts import PromptPackError, save_pack
from ioncannon.job.spec import JobSpec
from ioncannon.job.units import duration, money
from ioncannon.rental.costs import remember_hourly_price, remembered_hourly_price
from ioncannon.tui import format as fmt
from ioncannon.tui import models, pack, request
from ioncannon.tui.dialogs.choice import Choice, ChoiceDialog
from ioncannon.tui.request import wizard_request
from ioncannon.tui.screens.base import WizardScreen
from ioncannon.tui.screens.hardware_tables import PlanTables
from ioncannon.tui.widgets.meter import CostMeter
from ioncannon.tui.wizard import Step

if TYPE_CHECKING:
    from ioncannon.engine.hub_files import Availability


@dataclass(frozen=True)
class Decided:
    """What the planner decided that the screen shows and ctrl+f goes on from."""

    family: str
    resolution: int
    base_model: str


class HardwareScreen(PlanTables, WizardScreen):
    """Step 4: the plan, its cost, and the go."""

    STEP = Step.HARDWARE
    HELP_EXTRA = (("type", "the price per hour, a budget cap (20 dollars, 90m minutes) or the base model"),
                  ("tab / shift+tab", "between the boxes"))
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+p", "switch_preset", "Preset"),
        Binding("ctrl+l", "switch_mode", "Full/LoRA"),
        Binding("ctrl+g", "switch_gpus", "All GPUs"),
        Binding("ctrl+f", "switch_family", "Model"),
        Binding("ctrl+n", "next", "Start…"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.hardware: HardwareInfo | None = None
        self.demo_model = ""  # the demo's tiny model of the family the planner picked, made by the probe's worker
        self.result: Plan | Problems | None = None  # the planner's answer for the answers as they stand
        self.starting = False
        # the door check of the base model (can it be had, what it costs to download, does it fit the disk),
        # for the (model, family) it was asked about; None while it runs
        self.availability: Availability | None = None
        self.availability_key: tuple[str, str, bool] | None = None
        self.model_asked: tuple[str, str, bool] | None = None  # the check on its way
        self.go_when_checked = False

    # ------------------------------------------------------------------ what the planner decided

    @property
    def plan(self) -> Plan | None:
        """The job as it would run (also when a check still refuses it); None when no plan fits."""
        return self.result if isinstance(self.result, Plan) else self.result.plan if self.result else None

    @property
    def decided(self) -> Decided | None:
        """Family, size and base model, decided even when no plan fits (ctrl+f goes on from them)."""
        if self.plan is not None:
            spec = self.plan.spec
            return Decided(spec.family, spec.resolution, spec.base_model)
        if isinstance(self.result, Problems):
            return Decided(self.result.family, self.result.resolution, self.result.base_model)
        return None

    @property
    def choice(self) -> PlanChoice | None:
        return self.plan.choice if self.plan is not None else None

    @property
    def single(self) -> PlanChoice | None:
        return self.plan.single if self.plan is not None else None

    @property
    def parallel(self) -> PlanChoice | None:
        return self.plan.parallel if self.plan is not None else None

    @property
    def options(self) -> tuple[PlanChoice, ...]:
        return self.plan.options if self.plan is not None else ()

    @property
    def refusal(self) -> str:
        return self.result.refusal if isinstance(self.result, Problems) else ""

    @property
    def estimate(self) -> dict[str, float]:
        """Seconds per stage, the download as the door measured it; kept with the job for the finish screen."""
        if self.plan is None or not self.plan.estimate:
            return {}
        return self.plan.with_stage("fetch", self._download_s()).stage_seconds()

    @property
    def estimate_s(self) -> float | None:
        return sum(self.estimate.values()) if self.estimate else None

    def compose_body(self) -> ComposeResult:
        session = self.session
        with VerticalScroll(id="hardware-body"):
            yield Static("Looking at this machine's GPU, memory and disk…", id="hardware-facts")
            yield Static("", id="hardware-plan")
            with Horizontal(classes="field compact"):
                yield Label("Price per hour", classes="field-label")
                known = session.hourly_price if session.hourly_price is not None else remembered_hourly_price()
                price = "" if known is None else f"{known:g}"
                yield Input(value=price, placeholder="e.g. 2.49", id="hardware-price", select_on_focus=False,
                            restrict=r"[$0-9.,]*", max_length=10, compact=True)
                yield Static("", id="hardware-cost")
            with Horizontal(classes="field compact", id="hardware-budget-row"):
                yield Label("Budget cap", classes="field-label")
                yield Input(value=session.budget, placeholder="none", id="hardware-budget",
                            select_on_focus=False,
                            restrict=r"[$0-9.,a-zA-Z ]*", max_length=12, compact=True)
                yield Static("", id="hardware-budget-note")
            with Horizontal(classes="field compact"):
                yield Label("Base model", classes="field-label")
                yield Input(value=session.base_model, id="hardware-model", select_on_focus=False,
                            disabled=self.wizard.demo, compact=True)
            yield Static("", id="hardware-message")

    def on_mount(self) -> None:
        price = self.query_one("#hardware-price", Input)
        if self.session.hourly_price is None and price.value:
            self.wizard.store.update(hourly_price=fmt.parse_price(price.value))
        price.focus()
        self._probe_started = time.monotonic()
        self._probe_timer = self.set_interval(1.0, self._probe_waiting)
        self.probe()

    def _probe_waiting(self) -> None:
        """Count the seconds of the first look (torch loads, the GPU answers), so the wait is not silent."""
        if self.hardware is not None:
            self._probe_timer.stop()
            return
        waited = time.monotonic() - self._probe_started
        self.query_one("#hardware-facts", Static).update(
            f"Looking at this machine's GPU, memory and disk… (loading torch: {waited:.0f} s)")

    @work(thread=True, exclusive=True, group="probe", exit_on_error=False)
    def probe(self) -> None:
        """GPU, VRAM and disk (imports torch, so off the screen's thread); the demo's tiny model too."""
        with self.wizard.engine_import_lock:
            info = self.wizard.probe_hardware()
            model = ""
            if self.wizard.demo:
                from ioncannon.engine.demo import ensure_demo_model

                family = decide_family(self._request("estimate"), info)
                model = str(ensure_demo_model(self.wizard.workdir, family))
        self.app.call_from_thread(self._probed, info, model)

    def _probed(self, info: HardwareInfo, model: str) -> None:
        self.hardware, self.demo_model = info, model
        self._recompute()
        box = self.query_one("#hardware-model", Input)
        decided = self.decided
        if decided is not None and (self.wizard.demo or box.value.strip() != decided.base_model):
            box.value = decided.base_model

    # ------------------------------------------------------------------ plan, time and cost

    def _request(self, name: str) -> JobRequest:
        styles = None
        try:
            styles = tuple(pack.starting_styles(self.session.prompt_styles, self.wizard.demo))
        except PromptPackError:
            pass  # the prompts step says what is wrong with a saved pack; the estimate counts a typical one
        return wizard_request(self.session, self.wizard.workdir, name, demo=self.wizard.demo,
                              demo_model=self.demo_model, styles=styles)

    def _recompute(self, ask_about_model: bool = True) -> None:
        if self.hardware is None:
            return
        self.result = plan_job(self._request("estimate"), self.hardware)
        key = self._model_key()
        if ask_about_model and self.choice is not None and self.choice.fits and self.plan is not None \
                and self.availability_key != key and self.model_asked != key:
            self.model_asked = key
            self.check_model(self.plan.spec, key)
        self._redraw()

    # ------------------------------------------------------------------ the base model at the door

    def _model_key(self) -> tuple[str, str, bool]:
        """What the door check depends on: the model, its family, and whether a hub login is needed still."""
        decided = self.decided
        if decided is None:
            return "", "", True
        return decided.base_model, decided.family, self._login_problem() is None

    def _download_s(self) -> float:
        found = self.availability if self.availability_key == self._model_key() else None
        return found.seconds(self._rate()) if found is not None else 0.0

    def _rate(self) -> float | None:
        from ioncannon.job.download import recorded_rate

        return recorded_rate(self.wizard.workdir.expanduser() / ".cache")

    @work(thread=True, group="model", exit_on_error=False)
    def check_model(self, spec: JobSpec, key: tuple[str, str, bool]) -> None:
        """Can the base model be had (cached, local, or a hub that answers within its timeout), and does it fit?"""
        if self.wizard.demo:
            return  # the demo's tiny model is a local folder made on this machine
        from ioncannon.engine.hub_files import door_check

        found = door_check(spec, self.wizard.workdir)
        self.app.call_from_thread(self._model_checked, key, found)

    def _model_checked(self, key: tuple[str, str, bool], found: Availability) -> None:
        if key != self._model_key():
            return  # the person typed another model meanwhile: its own check is on its way
        self.availability_key, self.availability = key, found
        self._recompute()
        if self.go_when_checked and not self.starting:
            self.go_when_checked = False
            self.action_next()

    def spec_for(self, name: str) -> JobSpec:
        """The job this screen would start, exactly as shown (the planner's, under its real name)."""
        assert self.hardware is not None
        result = plan_job(self._request(name), self.hardware)
        plan = result if isinstance(result, Plan) else result.plan
        if plan is None:
            raise result.error() if isinstance(result, Problems) else AssertionError
        return plan.spec

    def pack_path(self, name: str) -> Path:
        """The job's own copy of the prompt pack: later edits of the wizard's pack don't change a started job."""
        return request.pack_path(self.wizard.workdir, name)

    def budget(self) -> tuple[float | None, float | None]:
        """The typed cap as (dollars, minutes); (None, None) when empty or unreadable (the note says why)."""
        return request.budget(self.session)

    def _redraw(self) -> None:
        self.query_one("#hardware-facts", Static).update(self._facts())
        self.query_one("#hardware-plan", Static).update(self._plan())
        self._redraw_cost()
        self.refresh_bindings()

    def _redraw_budget(self) -> None:
        self.query_one("#hardware-budget-note", Static).update(self._budget_note())

    def _redraw_cost(self) -> None:
        self._redraw_budget()
        cost = self.query_one("#hardware-cost", Static)
        if self.estimate_s is None:
            cost.update("")
            return
        price = self.session.hourly_price
        if price is None:
            cost.update(Text("type it to see the cost", style="dim"))
        else:
            cost.update(Text.assemble("≈ ", (fmt.cost(self.estimate_s, price), "bold"), " for this job"))

    # ------------------------------------------------------------------ answers

    @on(Input.Changed, "#hardware-price")
    def price_changed(self, event: Input.Changed) -> None:
        """Keep the typed hourly price with the wizard's answers (this box remembers it once the job starts)."""
        price = fmt.parse_price(event.value)
        self.wizard.store.update(hourly_price=price)
        self.query_one(CostMeter).hourly_price = price
        self._recompute()  # the planner checks a dollar cap against the price
        self._redraw_cost()

    @on(Input.Changed, "#hardware-budget")
    def budget_changed(self, event: Input.Changed) -> None:
        """Remember the budget cap and say what it means."""
        self.wizard.store.update(budget=event.value.strip())
        self._recompute()
        self._redraw_budget()

    @on(Input.Changed, "#hardware-model")
    def model_changed(self, event: Input.Changed) -> None:
        """Remember the base model (the plan says again whether it needs a login)."""
        if not self.wizard.demo:
            self.wizard.store.update(base_model=event.value.strip())
            if self.hardware is not None:
                self._recompute(ask_about_model=False)
                self.set_timer(0.6, self._model_settled)

    def _model_settled(self) -> None:
        """Ask about the typed model once typing pauses (not on every key: each look may wait on the hub)."""
        if self.availability_key != self._model_key() and self.choice is not None:
            self._recompute()

    @on(Input.Submitted)
    def submitted(self) -> None:
        """enter in a box means next."""
        self.action_next()

    def action_switch_preset(self) -> None:
        """Switch between the recommended recipe and the old notebook's classic one."""
        preset = "classic" if self.session.preset == "recommended" else "recommended"
        self.wizard.store.update(preset=preset)
        self._recompute()

    def action_switch_mode(self) -> None:
        """Switch between a full fine-tune and LoRA."""
        current = self.choice.plan.mode if self.choice is not None else (self.session.mode or "full")
        self.wizard.store.update(mode="lora" if current == "full" else "full")
        self._recompute()

    def action_switch_family(self) -> None:
        """Switch the model family and size (SD 1.5, SDXL 1024/768, Flux 1024/512 px); plan and base model follow."""
        if self.decided is None:
            return
        family, resolution = models.following_model(self.decided.family, self.decided.resolution, self.wizard.demo)
        self.wizard.store.update(family=family, resolution=resolution)
        self.result = None
        self.probe()

    def action_switch_gpus(self) -> None:
        """Switch between one GPU and all of them (data parallel, one process each)."""
        self.wizard.store.update(all_gpus=self.choice is not self.parallel)
        self._recompute()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The demo always runs its tiny plan: no preset or mode to switch; GPUs only where several fit the plan."""
        if action in ("switch_family", "switch_preset", "switch_mode") and self._no_gpu():
            return False  # no plan to change on a box without a GPU: the screen says what to do instead
        if action == "switch_mode" and self.decided is not None and family_info(self.decided.family).lora_only:
            return False  # Flux trains LoRA only
        if action in ("switch_preset", "switch_mode"):
            return not self.wizard.demo
        if action == "switch_gpus":
            return self.parallel is not None
        return True

    def _no_gpu(self) -> bool:
        return self.hardware is not None and self.hardware.best_gpu is None and not self.wizard.demo

    # ------------------------------------------------------------------ go

    def ready_for_next(self) -> bool:
        if self.hardware is not None and not self.starting:
            self._recompute()  # a login made or a file fixed meanwhile: ask the planner again
        message = self.query_one("#hardware-message", Static)
        problem = self._problem()
        message.update(Text(problem, style="bold red") if problem else "")
        return problem is None

    def _problem(self) -> str | None:
        if self.starting:
            return "Starting the job…"
        if self.hardware is None or self.result is None:
            return "Still probing the machine; a moment."
        if self.choice is None or not self.choice.fits:
            if self.hardware.best_gpu is None and not self.wizard.demo:
                return "Can't train without a GPU here: try it on the CPU with `ioncannon --demo` (see above)."
            return f"Can't start: {self.refusal}"
        try:
            fmt.parse_budget(self.session.budget)
        except ValueError as exc:
            return f"Budget cap: {exc}."
        if not self.wizard.demo and not self.session.base_model.strip():
            return "Type a base model: a Hugging Face id, a diffusers folder or a .safetensors file."
        if isinstance(self.result, Problems):  # the planner's checks, the same `ioncannon run` makes
            return self.result.sentences[0]
        if not self.wizard.demo:
            found = self.availability if self.availability_key == self._model_key() else None
            if found is None:
                self.go_when_checked = True  # the answer is on its way: go on by itself once it is a yes
                self._recompute()  # a login since the last look: ask again
                return "Checking that the base model can be had; a moment."
            if found.problem:
                return found.problem
        return None

    def action_next(self) -> None:
        """Ask for an explicit go before anything is created or started."""
        if not self.ready_for_next() or self.estimate_s is None:
            return
        price = self.session.hourly_price
        cost = f", about {fmt.cost(self.estimate_s, price)}" if price is not None else ""
        dollars, minutes = self.budget()
        cap = ""
        if dollars is not None:
            cap = f" It stops itself at {money(dollars)}."
        elif minutes is not None:
            cap = f" It stops itself after {duration(minutes * 60, 'rough').removeprefix('about ')}."
        processes = self.choice.plan.num_processes if self.choice is not None else 1
        gpus = len(self.hardware.gpus) if self.hardware is not None else 0
        where = f"on {processes} GPUs, one process each " if processes > 1 else "on one GPU " if gpus > 1 else ""
        body = (
            f"This creates a job in {self.wizard.workdir} and starts training now {where}"
            f"({duration(self.estimate_s, 'rough')}{cost}).{cap}\n"
            "It runs on its own: you can close this terminal and come back with `ioncannon`."
        )
        self.app.push_screen(
            ChoiceDialog("Start training?", body,
                         [Choice("enter", "start", "start"), Choice("escape", "not yet", "no")]),
            self._confirmed,
        )

    def _confirmed(self, answer: str | None) -> None:
        if answer == "start" and not self.starting:
            self.starting = True
            self.query_one("#hardware-message", Static).update(Text("Creating the job and starting it…", style="bold"))
            self.create_and_start()

    @work(thread=True, exclusive=True, group="start", exit_on_error=False)
    def create_and_start(self) -> None:
        """Write job.json and start the detached runner."""
        from ioncannon.job import handle
        from ioncannon.job.workdir import new_job_name

        try:
            name = new_job_name(self.wizard.workdir, self.session.identifier)
            spec = self.spec_for(name)
            styles = pack.starting_styles(self.session.prompt_styles, self.wizard.demo)
            paths = handle.create(self.wizard.workdir, spec, estimate=self.estimate)
            save_pack(spec.generate.prompt_pack, styles)
            if spec.hourly_price is not None:
                try:
                    remember_hourly_price(spec.hourly_price)  # the finish screen and later jobs on this box use it
                except OSError:
                    pass  # an unwritable config dir only costs the convenience
            handle.start(paths, self.wizard.workdir)
        except Exception as exc:
            self.app.call_from_thread(self._start_failed, exc)
            return
        self.app.call_from_thread(self._started, paths, spec)

    def _started(self, paths: JobPaths, spec: JobSpec) -> None:
        self.wizard.attach(paths, spec)

    def _start_failed(self, exc: Exception) -> None:
        self.starting = False
        self.query_one("#hardware-message", Static).update("")
        self.wizard.show_error(f"The job could not be started: {exc}",
                               "Check the work dir (--workdir DIR), then try again.", exc)
