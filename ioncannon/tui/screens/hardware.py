"""Hardware: what the box has, the plan that fits, time and cost; an explicit confirm starts the job."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Static

from ioncannon.job.families import detect_family, family_info, mismatch_message
from ioncannon.job.hub import login_problem
from ioncannon.job.paths import JobPaths
from ioncannon.job.presets import PRESETS
from ioncannon.job.prompts import save_pack
from ioncannon.job.spec import JobSpec
from ioncannon.job.units import duration, money
from ioncannon.rental.costs import remember_hourly_price, remembered_hourly_price
from ioncannon.tui import format as fmt
from ioncannon.tui import models, pack
from ioncannon.tui.dialogs.choice import Choice, ChoiceDialog
from ioncannon.tui.screens.base import DEMO_NOTE, WizardScreen
from ioncannon.tui.widgets.meter import CostMeter
from ioncannon.tui.wizard import Step

if TYPE_CHECKING:
    from ioncannon.engine.hardware import HardwareInfo, PlanChoice
    from ioncannon.engine.hub_files import Availability


def looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.endswith(".safetensors")


class HardwareScreen(WizardScreen):
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
        self.base_spec: JobSpec | None = None
        self.choice: PlanChoice | None = None  # what would run: `single`, or `parallel` when all GPUs are chosen
        self.single: PlanChoice | None = None
        self.parallel: PlanChoice | None = None  # `single` over every GPU it fits; None on 0-1 GPU
        self.options: list[PlanChoice] = []
        self.refusal = ""
        self.estimate_s: float | None = None
        self.estimate: dict[str, float] = {}  # seconds per stage; kept with the job for the finish screen
        self.starting = False
        # the door check of the base model (can it be had, what it costs to download, does it fit the disk),
        # for the (model, family) it was asked about; None while it runs
        self.availability: Availability | None = None
        self.availability_key: tuple[str, str, bool] | None = None
        self.model_asked: tuple[str, str, bool] | None = None  # the check on its way
        self.go_when_checked = False

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
            spec = self._base_spec(info)
        self.app.call_from_thread(self._probed, info, spec)

    def _base_spec(self, info: HardwareInfo) -> JobSpec:
        from ioncannon.engine.hardware import default_family

        session = self.session
        family = session.family or default_family(info, self.wizard.demo)
        if self.wizard.demo:
            from ioncannon.engine.demo import demo_spec

            return demo_spec(self.wizard.workdir, name="estimate", photos_dir=session.photos_dir or None,
                             identifier=session.identifier, class_name=session.class_name, family=family)
        return JobSpec(name="estimate", photos_dir=session.photos_dir, identifier=session.identifier,
                       class_name=session.class_name, base_model=models.base_model_for(family, session.base_model),
                       family=family, resolution=models.resolution_for(family, session.resolution),
                       generate=family_info(family).generate)

    def _probed(self, info: HardwareInfo, spec: JobSpec) -> None:
        self.hardware, self.base_spec = info, spec
        model = self.query_one("#hardware-model", Input)
        if self.wizard.demo or model.value.strip() != spec.base_model:
            model.value = spec.base_model
        self._recompute()

    # ------------------------------------------------------------------ plan, time and cost

    def _recompute(self) -> None:
        from ioncannon.engine import hardware

        if self.hardware is None or self.base_spec is None:
            return
        session = self.session
        try:
            self.single = hardware.choose_plan(self.hardware, session.preset, session.mode, self.wizard.demo,
                                               family=self.base_spec.family)
            self.refusal = "" if self.single.fits else self.single.why
        except hardware.NothingFits as exc:
            self.single, self.refusal = None, str(exc)
        self.parallel = hardware.data_parallel(self.single, self.hardware) if self.single is not None else None
        self.choice = self.parallel if session.all_gpus and self.parallel is not None else self.single
        self.options = hardware.plan_options(self.hardware, self.wizard.demo, family=self.base_spec.family)
        self.estimate_s, self.estimate = None, {}
        if self.choice is not None and self.choice.fits:
            self.estimate = hardware.estimate_stages(self.spec_for(self.base_spec.name), self.choice,
                                                     self._download_s())
            self.estimate_s = sum(self.estimate.values())
            key = self._model_key()
            if self.availability_key != key and self.model_asked != key:
                self.model_asked = key
                self.check_model(self.spec_for(self.base_spec.name), key)
        self._redraw()

    # ------------------------------------------------------------------ the base model at the door

    def _model_key(self) -> tuple[str, str, bool]:
        """What the door check depends on: the model, its family, and whether a hub login is needed still."""
        family = self.base_spec.family if self.base_spec is not None else ""
        model = models.base_model_for(family, self.session.base_model) if family else ""
        return model, family, self._login_problem() is None

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
        """The job this screen would start, exactly as shown."""
        assert self.base_spec is not None and self.choice is not None
        session = self.session
        dollars, minutes = self.budget()
        generate = dataclasses.replace(
            self.base_spec.generate, prompt_pack=str(self.pack_path(name)),
            images_per_prompt=pack.images_per_prompt(session.run_length, self.base_spec.generate),
        )
        return self.base_spec.replace(
            name=name, train=self.choice.plan, hourly_price=session.hourly_price,
            crops=dict(session.crops), excluded=tuple(session.excluded), kept=tuple(session.kept),
            base_model=self.base_spec.base_model if self.wizard.demo else models.base_model_for(
                self.base_spec.family, session.base_model),
            budget_money=dollars, budget_minutes=minutes, generate=generate,
        )

    def pack_path(self, name: str) -> Path:
        """The job's own copy of the prompt pack: later edits of the wizard's pack don't change a started job."""
        return JobPaths(self.wizard.workdir.expanduser().resolve() / name).prompt_pack_file

    def budget(self) -> tuple[float | None, float | None]:
        """The typed cap as (dollars, minutes); (None, None) when empty or unreadable (the note says why)."""
        try:
            return fmt.parse_budget(self.session.budget)
        except ValueError:
            return None, None

    def _redraw(self) -> None:
        self.query_one("#hardware-facts", Static).update(self._facts())
        self.query_one("#hardware-plan", Static).update(self._plan())
        self._redraw_cost()
        self.refresh_bindings()

    def _facts(self) -> Table:
        info = self.hardware
        assert info is not None
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold", width=14)
        table.add_column()
        gpu = info.best_gpu
        if gpu is None:
            table.add_row("GPU", Text("none visible (CUDA not available)", style="yellow"))
        elif len(info.gpus) == 1:
            table.add_row("GPU", f"{gpu.name} · {fmt.gib(gpu.free_gib)} free of {fmt.gib(gpu.total_gib)}")
        else:
            table.add_row("GPUs", self._gpus_summary(info))
            for line in self._gpus_offer():
                table.add_row("", line)
        table.add_row("Disk", f"{fmt.gib(info.disk_free_gib)} free in {self.wizard.workdir}")
        table.add_row("CPU / RAM", f"{info.cpu_count} cores · {fmt.gib(info.ram_gib)}")
        return table

    @staticmethod
    def _gpus_summary(info: HardwareInfo) -> str:
        names = {g.name for g in info.gpus}
        what = f"{len(info.gpus)} × {info.gpus[0].name}" if len(names) == 1 else " + ".join(g.name for g in info.gpus)
        frees = {g.free_gib for g in info.gpus}
        if len(frees) == 1:
            return f"{what} · {fmt.gib(frees.pop())} free each"
        return f"{what} · " + ", ".join(f"{g.free_gib:.1f}" for g in info.gpus) + " GiB free"

    def _gpus_offer(self) -> list[Text]:
        """Training on one GPU or all of them (ctrl+g), and what all of them changes: batch, steps, learning rate."""
        single, parallel = self.single, self.parallel
        if parallel is None or single is None:
            if single is None or not single.fits or self.wizard.demo:
                return []
            return [Text("training on one: the others lack the free memory for this plan", style="dim")]
        n = parallel.plan.num_processes
        if self.choice is parallel:
            head = Text.assemble((f"training on all {n}", "bold green"), " — one only (ctrl+g)")
        else:
            head = Text.assemble("training on one — ", (f"use all {n} (ctrl+g)", "bold"))
        # the memory row already says what fits; keep only the scaling here
        return [head, Text(parallel.why.removesuffix(f"; {single.why}"), style="dim")]

    def _plan(self) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold", width=14)
        table.add_column()
        session, choice = self.session, self.choice
        if choice is None or not choice.fits:
            if self.hardware is not None and self.hardware.best_gpu is None and not self.wizard.demo:
                return self._no_gpu_route(table)
            table.add_row("Plan", Text("nothing fits this machine", style="bold red"))
            table.add_row("", Text(self.refusal, style="red"))
            return table
        plan = choice.plan
        preset = "demo" if self.wizard.demo else session.preset
        label = choice.label if plan.mode == "full" else f"{choice.label} rank {plan.lora_rank}"
        if self.base_spec is not None:
            family, resolution = self.base_spec.family, self.base_spec.resolution
            next_family, next_size = models.following_model(family, resolution, self.wizard.demo)
            switch = f" · ctrl+f: {family_info(next_family).label}" + ("" if self.wizard.demo else f" {next_size} px")
            table.add_row("Model", Text.assemble((family_info(family).label, "bold"), f" · {resolution} px",
                                                 (switch, "dim")))
            info = family_info(family)
            if info.notice:  # a licence to accept and a gated download: the person must act before the job
                table.add_row("Licence", Text(info.licence, style="yellow"))
                table.add_row("", self._login_line())
        table.add_row("Plan", Text.assemble((label, "bold green"), f" · {preset} preset"))
        recipe = PRESETS.get(preset, "")
        if self.base_spec is not None and family_info(self.base_spec.family).lora_only and not self.wizard.demo:
            recipe = (f"LoRA rank {plan.lora_rank} on the attention and MLP layers; the text encoders run once to "
                      "cache the prompts, then leave the GPU.")
        table.add_row("", Text(recipe, style="dim"))
        klass = f"{plan.num_class_images} class images" if plan.prior_preservation else "no class images"
        table.add_row("Recipe", f"{plan.steps} steps · lr {plan.learning_rate:.3g} · {plan.precision} · {klass}"
                                + (" · text encoder trained" if plan.train_text_encoder else ""))
        if not plan.prior_preservation and self.base_spec is not None:
            why = family_info(self.base_spec.family).prior_why
            table.add_row("", Text(f"prior preservation off: {why} (a job file can turn it on)", style="dim"))
        speed = f" · ≈ {choice.predicted_steps_per_s:g} it/s" if choice.predicted_steps_per_s else ""
        each = " per GPU" if plan.num_processes > 1 else ""
        table.add_row("Memory", f"peak ≈ {fmt.gib(choice.predicted_peak_gib)}{each}{speed}")
        table.add_row("", Text((self.single or choice).why, style="dim"))
        if not self.wizard.demo:
            table.add_row("Download", self._download_text())
        if self.estimate_s is not None:
            table.add_row("Time", f"{duration(self.estimate_s, 'rough')} for the whole job")
        others = self._other_modes(plan.mode)
        if others is not None:
            table.add_row("Other plans", others)
        if self.wizard.demo:
            table.add_row("", Text(DEMO_NOTE, style="italic"))
        return table

    def _download_text(self) -> Text:
        """The base model's download: what and how long, or why it can't be had; said while it is being asked."""
        found = self.availability if self.availability_key == self._model_key() else None
        if found is None:
            return Text("checking the base model (cache, folder or the Hugging Face Hub)…", style="dim")
        if found.problem:
            if found.problem == self._login_problem():
                return Text("after the login above", style="dim")
            return Text(found.problem, style="bold red")
        return Text(found.line(self._rate()))

    def _no_gpu_route(self, table: Table) -> Table:
        """No GPU: say plainly what can be done here (the CPU demo, with these photos) and what needs a GPU box."""
        folder = self.session.photos_dir or "your photo folder"
        table.add_row("Plan", Text("no GPU here: real training needs an NVIDIA GPU", style="bold red"))
        table.add_row("On this CPU", Text.assemble(
            "quit (ctrl+q) and run ", ("ioncannon --demo", "bold"), "; on its Photos step type ", (folder, "bold"),
            ". Every stage runs for real in a few minutes with a tiny random-weight model: "
            "your photos are checked and trained on, but the pictures come out as noise.",
        ))
        table.add_row("Real results", Text.assemble(
            "run ", ("ioncannon", "bold"), " on a box with an NVIDIA GPU (a rented one is fine).", style="dim",
        ))
        return table

    def _login_line(self) -> Text:
        """What the gated download needs: in the demo, what a real run would need (the tiny model needs nothing)."""
        if self.wizard.demo:
            return Text("a real run downloads FLUX.1-dev, gated on the Hugging Face Hub: accept its licence and log in "
                        "(`hf auth login` or HF_TOKEN); the demo's tiny model needs neither", style="dim")
        login = self._login_problem()
        if login:
            return Text(login, style="bold red")
        return Text("gated on the Hugging Face Hub: a login token is on this machine", style="dim")

    def _login_problem(self) -> str | None:
        """How to log in, when the base model is gated on the hub and this machine has no token (not in the demo)."""
        if self.wizard.demo or self.base_spec is None:
            return None
        return login_problem(models.base_model_for(self.base_spec.family, self.session.base_model))

    def _other_modes(self, current: str) -> Text | None:
        """One line on the other mode: the leanest plan of it and whether it fits (ctrl+l switches)."""
        other = [o for o in self.options if o.plan.mode != current]
        if not other:
            return None
        leanest = min(other, key=lambda o: o.predicted_peak_gib)
        name = "LoRA" if leanest.plan.mode == "lora" else "full fine-tune"
        verdict = "fits" if any(o.fits for o in other) else "does not fit"
        return Text(f"{name} from {fmt.gib(leanest.predicted_peak_gib)}: {verdict} (ctrl+l switches)", style="dim")

    def _redraw_budget(self) -> None:
        self.query_one("#hardware-budget-note", Static).update(self._budget_note())

    def _budget_note(self) -> Text:
        price = self.session.hourly_price
        try:
            dollars, minutes = fmt.parse_budget(self.session.budget)
        except ValueError as exc:
            return Text(str(exc), style="bold red")
        if dollars is not None:
            if price is None:
                return Text("a dollar cap needs the price per hour above", style="yellow")
            seconds = dollars / price * 3600 if price > 0 else None
            after = f" (after {duration(seconds, 'rough').removeprefix('about ')})" if seconds is not None else ""
            return Text(f"stops the job at {money(dollars)}{after}")
        if minutes is not None:
            cost = f", ≈ {fmt.cost(minutes * 60, price)}" if price is not None else ""
            return Text(f"stops the job after {duration(minutes * 60, 'rough').removeprefix('about ')}{cost}")
        return Text("optional: 20 ($) or 90m; saves, then stops", style="dim")  # fits beside the box at 80 columns

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
        self._redraw_cost()

    @on(Input.Changed, "#hardware-budget")
    def budget_changed(self, event: Input.Changed) -> None:
        """Remember the budget cap and say what it means."""
        self.wizard.store.update(budget=event.value.strip())
        self._redraw_budget()

    @on(Input.Changed, "#hardware-model")
    def model_changed(self, event: Input.Changed) -> None:
        """Remember the base model (the plan says again whether it needs a login)."""
        if not self.wizard.demo:
            self.wizard.store.update(base_model=event.value.strip())
            if self.hardware is not None and self.base_spec is not None:
                self.query_one("#hardware-plan", Static).update(self._plan())
                self.set_timer(0.6, self._model_settled)

    def _model_settled(self) -> None:
        """Ask about the typed model once typing pauses (not on every key: each look may wait on the hub)."""
        if self.availability_key != self._model_key() and self.choice is not None and self.base_spec is not None:
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
        if self.base_spec is None:
            return
        family, resolution = models.following_model(self.base_spec.family, self.base_spec.resolution, self.wizard.demo)
        self.wizard.store.update(family=family, resolution=resolution)
        self.choice = None
        self.probe()

    def action_switch_gpus(self) -> None:
        """Switch between one GPU and all of them (data parallel, one process each)."""
        self.wizard.store.update(all_gpus=self.choice is not self.parallel)
        self._recompute()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The demo always runs its tiny plan: no preset or mode to switch; GPUs only where several fit the plan."""
        if action in ("switch_family", "switch_preset", "switch_mode") and self._no_gpu():
            return False  # no plan to change on a box without a GPU: the screen says what to do instead
        if action == "switch_mode" and self.base_spec is not None and family_info(self.base_spec.family).lora_only:
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
        message = self.query_one("#hardware-message", Static)
        problem = self._problem()
        message.update(Text(problem, style="bold red") if problem else "")
        return problem is None

    def _problem(self) -> str | None:
        if self.starting:
            return "Starting the job…"
        if self.hardware is None:
            return "Still probing the machine; a moment."
        if self.choice is None or not self.choice.fits:
            if self.hardware.best_gpu is None and not self.wizard.demo:
                return "Can't train without a GPU here: try it on the CPU with `ioncannon --demo` (see above)."
            return f"Can't start: {self.refusal}"
        try:
            dollars, _minutes = fmt.parse_budget(self.session.budget)
        except ValueError as exc:
            return f"Budget cap: {exc}."
        if dollars is not None and self.session.hourly_price is None:
            return "A budget in dollars needs the price per hour: type it, or give the cap in minutes (90m)."
        model = self.session.base_model.strip()
        if not self.wizard.demo:
            if not model:
                return "Type a base model: a Hugging Face id, a diffusers folder or a .safetensors file."
            if looks_like_path(model) and not Path(model).expanduser().exists():
                return f"{model} does not exist. Type a Hugging Face id, a diffusers folder or a .safetensors file."
            found, wanted = detect_family(model), self.base_spec.family if self.base_spec is not None else "sd15"
            if found is not None and found != wanted:
                return mismatch_message(model, found, wanted)
            login = self._login_problem()
            if login:
                return login
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
