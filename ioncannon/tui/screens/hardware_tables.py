"""What the hardware step shows: the box, the planner's plan and its options, the budget's meaning (rich tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from ioncannon.job.families import family_info
from ioncannon.job.hub import login_problem
from ioncannon.job.plan.box import HardwareInfo
from ioncannon.job.plan.presets import PRESETS
from ioncannon.job.units import duration, money
from ioncannon.tui import format as fmt
from ioncannon.tui import models
from ioncannon.tui.screens.base import DEMO_NOTE

if TYPE_CHECKING:
    from ioncannon.engine.hub_files import Availability
    from ioncannon.job.plan.memory import PlanChoice
    from ioncannon.job.plan.planner import Plan
    from ioncannon.tui.app import IonCannonApp
    from ioncannon.tui.screens.hardware import Decided
    from ioncannon.tui.session import WizardSession


class PlanTables:
    """The hardware screen's presentation of what the planner decided; the screen supplies the answers below."""

    hardware: HardwareInfo | None
    plan: Plan | None
    decided: Decided | None
    choice: PlanChoice | None
    single: PlanChoice | None
    parallel: PlanChoice | None
    options: tuple[PlanChoice, ...]
    refusal: str
    estimate_s: float | None
    session: WizardSession
    wizard: IonCannonApp
    availability: Availability | None
    availability_key: tuple[str, str, bool] | None
    # and the screen's _model_key() and _rate(): the door check's key and the download rate

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
        if self.decided is not None:
            family, resolution = self.decided.family, self.decided.resolution
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
        if self.decided is not None and family_info(self.decided.family).lora_only and not self.wizard.demo:
            recipe = (f"LoRA rank {plan.lora_rank} on the attention and MLP layers; the text encoders run once to "
                      "cache the prompts, then leave the GPU.")
        table.add_row("", Text(recipe, style="dim"))
        klass = f"{plan.num_class_images} class images" if plan.prior_preservation else "no class images"
        table.add_row("Recipe", f"{plan.steps} steps · lr {plan.learning_rate:.3g} · {plan.precision} · {klass}"
                                + (" · text encoder trained" if plan.train_text_encoder else ""))
        if not plan.prior_preservation and self.decided is not None:
            why = family_info(self.decided.family).prior_why
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
        if self.wizard.demo or self.decided is None:
            return None
        return login_problem(self.decided.base_model)

    def _other_modes(self, current: str) -> Text | None:
        """One line on the other mode: the leanest plan of it and whether it fits (ctrl+l switches)."""
        other = [o for o in self.options if o.plan.mode != current]
        if not other:
            return None
        leanest = min(other, key=lambda o: o.predicted_peak_gib)
        name = "LoRA" if leanest.plan.mode == "lora" else "full fine-tune"
        verdict = "fits" if any(o.fits for o in other) else "does not fit"
        return Text(f"{name} from {fmt.gib(leanest.predicted_peak_gib)}: {verdict} (ctrl+l switches)", style="dim")

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
