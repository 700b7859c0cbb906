"""The finish screen's dialogs: bundle (size first), wipe and destroy (typed confirmation), hourly price."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, ProgressBar, Static

from ioncannon.job.fsio import free_bytes
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.rental import bundle as bundles
from ioncannon.rental.bundle import bundle_counts
from ioncannon.rental.costs import parse_price, remember_hourly_price
from ioncannon.rental.provider import WHY_DESTROY, ProviderCommand, ProviderInfo, run_provider_command
from ioncannon.rental.wipe import WipeError, WipeReceipt, plan_wipe, wipe

_DIALOG_CSS = """
{name} {{ align: center middle; background: $background 60%; }}
{name} > Vertical {{
    width: 76; max-width: 100%; height: auto; max-height: 100%;
    border: round $accent; background: $surface; padding: 0 1;
}}
{name} .dialog-title {{ text-style: bold; color: $accent; }}
{name} .dialog-keys {{ color: $text-muted; margin-top: 1; }}
{name} .dialog-warning {{ color: $warning; }}
{name} Input {{ margin-top: 1; }}
"""


MODEL_NAMES = {"single": "single .safetensors file", "diffusers": "diffusers folder", "lora": "LoRA weights"}


def _keys(*pairs: tuple[str, str]) -> Text:
    text = Text()
    for i, (key, label) in enumerate(pairs):
        text.append(" " if i else "")
        text.append(f" {key} ", style="bold reverse")
        text.append(f" {label}")
    return text


class BundleDialog(ModalScreen["str | None"]):
    """Shows what the bundle holds and its size; enter writes it, with a progress bar."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="BundleDialog")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "write", "Write", priority=True),
        Binding("i", "toggle_images", "All/starred"),
        Binding("f", "toggle_folder", "Diffusers folder"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, paths: JobPaths, spec: JobSpec) -> None:
        super().__init__()
        self.paths, self.spec = paths, spec
        self.images = "all"
        self.formats: tuple[str, ...] = bundles.DEFAULT_MODEL_FORMATS
        self.plan: bundles.BundlePlan | None = None
        self.state = "planning"  # planning | writing | written

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Bundle the results into one file", classes="dialog-title")
            yield Static("", id="bundle-summary")
            yield ProgressBar(total=100, show_eta=False, id="bundle-progress")
            yield Static("", classes="dialog-keys", id="bundle-keys")

    def on_mount(self) -> None:
        """Size the archive before anything is written."""
        self.bar = self.query_one(ProgressBar)
        self.bar.display = False
        self._replan()

    def _replan(self) -> None:
        self.plan = None
        self.query_one("#bundle-summary", Static).update(Text("Sizing the bundle…", style="dim"))
        self._plan(self.images, self.formats)

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def _plan(self, images: str, formats: tuple[str, ...]) -> None:
        """Plan off the UI thread: reading the prompt plan loads the generator (and torch)."""
        try:
            plan = bundles.plan_bundle(self.paths, self.spec, images=images, model_formats=formats)  # type: ignore[arg-type]
            models = [f for f in formats if f in bundles.available_model_formats(self.paths)]
            counts = dict(plan.counts)
            cards = sum(1 for e in plan.entries
                        if e.kind == "model" and bundles.model_format_of(self.paths, e.source) == "card")
            if cards:  # the model card travels with the weights but is not one of them
                counts["model"] -= cards
                counts["model_card"] = cards
                if not counts["model"]:
                    del counts["model"]
        except bundles.BundleError as exc:
            self.app.call_from_thread(self._show_plan, None, str(exc), [], {})
            return
        self.app.call_from_thread(self._show_plan, plan, "", models, counts)

    def _show_plan(self, plan: bundles.BundlePlan | None, problem: str, models: list[str],
                   counts: dict[str, int]) -> None:
        self.plan = plan
        summary = self.query_one("#bundle-summary", Static)
        if plan is None:
            summary.update(Text(problem, style="yellow"))
        else:
            free = free_bytes(plan.archive.parent)
            model = ", ".join(MODEL_NAMES.get(f, f) for f in models) or "none"
            summary.update(
                Text.assemble(
                    (f"{bundles.human_bytes(plan.archive_bytes)}", "bold"),
                    f" → {plan.archive.name}\n",
                    f"{bundle_counts(counts)}\nimages: {self.images} · model: {model}\n",
                    (
                        f"{bundles.human_bytes(free)} free on this disk",
                        "green" if free > plan.archive_bytes else "bold red",
                    ),
                )
            )
        keys = [("enter", "write it")] if plan is not None else []
        keys += [
            ("i", f"images: {'starred' if self.images == 'all' else 'all'}"),
            ("f", "− diffusers folder" if "diffusers" in self.formats else "+ diffusers folder"),
            ("esc", "cancel"),
        ]
        self.query_one("#bundle-keys", Static).update(_keys(*keys))

    def action_toggle_images(self) -> None:
        """Switch between all images and only the starred ones."""
        if self.state == "planning":
            self.images = "starred" if self.images == "all" else "all"
            self._replan()

    def action_toggle_folder(self) -> None:
        """Add or leave out the diffusers folder (the same weights as the single file)."""
        if self.state == "planning":
            fmts = list(self.formats)
            fmts.remove("diffusers") if "diffusers" in fmts else fmts.append("diffusers")
            self.formats = tuple(fmts)
            self._replan()

    def action_write(self) -> None:
        """Write the archive (or close once written)."""
        if self.state == "written":
            self.dismiss(str(self.plan.archive) if self.plan else None)
        elif self.state == "planning" and self.plan is not None:
            self.state = "writing"
            self.query_one(ProgressBar).display = True
            self.query_one("#bundle-keys", Static).update(_keys(("esc", "cancel")))
            self._write(self.plan)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _write(self, plan: bundles.BundlePlan) -> None:
        """Hash and copy every file into the zip off the UI thread."""
        last = [-1]
        bar = self.bar

        def progress(done: int, total: int) -> None:
            percent = 100 * done // max(total, 1)
            if percent != last[0]:  # one UI update per percent, not per chunk
                last[0] = percent
                self.app.call_from_thread(bar.update, progress=percent)

        try:
            archive = bundles.write_bundle(plan, progress=progress, should_stop=lambda: self.state != "writing")
            bundles.update_finish_record(self.paths, bundle={"path": str(archive), "bytes": archive.stat().st_size})
        except (bundles.BundleError, OSError) as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._written, archive.stat().st_size)

    def _failed(self, message: str) -> None:
        self.state = "planning"
        self.query_one(ProgressBar).display = False
        self.query_one("#bundle-summary", Static).update(Text(message, style="bold red"))

    def _written(self, size: int) -> None:
        self.state = "written"
        assert self.plan is not None
        self.query_one(ProgressBar).update(progress=100)
        self.query_one("#bundle-summary", Static).update(Text.assemble(
            ("Written: ", "bold green"), f"{self.plan.archive} ({bundles.human_bytes(size)})\n",
            "Copy it home with the scp or rsync command on the finish screen.",
        ))
        self.query_one("#bundle-keys", Static).update(_keys(("enter", "done")))

    def action_close(self) -> None:
        """Cancel (a half-written archive is removed) or close."""
        if self.state == "writing":
            self.state = "cancelled"
        self.dismiss(str(self.plan.archive) if self.state == "written" and self.plan else None)


class WipeDialog(ModalScreen["WipeReceipt | None"]):
    """Lists what the wipe removes; the job name typed in full confirms it."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="WipeDialog")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, paths: JobPaths, spec: JobSpec) -> None:
        super().__init__()
        self.paths, self.spec = paths, spec
        self.receipt: WipeReceipt | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Wipe the subject's data from this box", classes="dialog-title")
            yield Static("", id="wipe-plan")
            yield Checkbox("also the generated images, the models and the bundle", id="wipe-results")
            yield Static("Only once your download has finished.", classes="dialog-warning")
            yield Input(placeholder=f"type {self.spec.name} to wipe", id="wipe-confirm")
            yield Static(_keys(("enter", "wipe"), ("tab", "next field"), ("esc", "cancel")), classes="dialog-keys")

    def on_mount(self) -> None:
        """Show the plan and put the cursor in the confirmation field."""
        self._show_plan()
        self.query_one(Input).focus()

    @on(Checkbox.Changed)
    def _show_plan(self) -> None:
        items = plan_wipe(self.paths, self.spec, include_results=self.query_one(Checkbox).value)
        text = Text()
        for item in items:
            text.append(f"• {item.label}", style="bold")
            text.append(f"  {item.files} files, {bundles.human_bytes(item.bytes)}\n")
        if not items:
            text.append("Nothing of the subject is left in this job.\n")
        text.append("Kept: class images (generic, not of your subject).", style="dim")
        self.query_one("#wipe-plan", Static).update(text)

    @on(Input.Submitted)
    def _confirm(self, event: Input.Submitted) -> None:
        if self.receipt is not None:
            self.dismiss(self.receipt)
            return
        if event.value.strip() != self.spec.name:
            self.notify(f"Type the job name exactly: {self.spec.name}", severity="warning")
            return
        try:
            self.receipt = wipe(self.paths, self.spec, include_results=self.query_one(Checkbox).value)
        except WipeError as exc:
            self.query_one("#wipe-plan", Static).update(Text(str(exc), style="bold red"))
            return
        bundles.record_download(self.paths, "confirmed")
        self.query_one(Checkbox).display = False
        self.query_one(".dialog-warning", Static).display = False
        self.query_one(Input).display = False
        self.query_one("#wipe-plan", Static).update("\n".join(self.receipt.lines(relative_to=self.paths.root)))
        self.query_one(".dialog-keys", Static).update(_keys(("esc", "close")))

    def action_close(self) -> None:
        """Close; the receipt (if any) goes back to the finish screen."""
        self.dismiss(self.receipt)


class DestroyDialog(ModalScreen["str | None"]):
    """Asks about the download first, shows the exact command, runs it after the typed word."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="DestroyDialog")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "downloaded", "Downloaded", show=False),
        Binding("n", "declined", "Go without", show=False),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, paths: JobPaths, info: ProviderInfo, commands: dict[str, ProviderCommand]) -> None:
        super().__init__()
        self.paths, self.info, self.commands = paths, info, commands
        self.phase = "ask" if bundles.download_decided(paths) is None else "confirm"
        self.result: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Destroy this {self.info.display_name} instance", classes="dialog-title")
            yield Static("", id="destroy-body")
            # Disabled until its phase, so it can't take focus (and the y/n keys) before then.
            yield Input(placeholder="type destroy (or stop)", id="destroy-confirm", disabled=True)
            yield Static("", classes="dialog-keys", id="destroy-keys")

    def on_mount(self) -> None:
        """Start with the download question unless it was answered before."""
        self._show()

    def _show(self) -> None:
        body = self.query_one("#destroy-body", Static)
        field = self.query_one(Input)
        keys = self.query_one("#destroy-keys", Static)
        if self.phase == "ask":
            field.display = False
            body.update("Are your results copied home? Destroying deletes everything on this box.")
            keys.update(_keys(("y", "yes, downloaded"), ("n", "go without them"), ("esc", "cancel")))
            return
        field.display = self.phase == "confirm"
        field.disabled = self.phase != "confirm"
        if self.phase == "confirm":
            body.update(Text.assemble(
                "This will run:\n  ", (self.commands["destroy"].shown, "bold"), "\n",
                (WHY_DESTROY, "yellow"), "\nTyping stop runs ", (self.commands["stop"].shown, "bold"), " instead.",
            ))
            keys.update(_keys(("enter", "run"), ("esc", "cancel")))
            field.focus()
        else:
            body.update(self.result or "")
            keys.update(_keys(("esc", "close")))

    def _decide(self, decision: str) -> None:
        if self.phase == "ask":
            bundles.record_download(self.paths, decision)  # type: ignore[arg-type]
            self.phase = "confirm"
            self._show()

    def action_downloaded(self) -> None:
        """The results are home."""
        self._decide("confirmed")

    def action_declined(self) -> None:
        """Go on without the results."""
        self._decide("declined")

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        word = event.value.strip().lower()
        if word not in self.commands:
            self.notify("Type destroy (or stop) to go on, esc to cancel.", severity="warning")
            return
        self.phase = "running"
        self.result = f"Running {self.commands[word].shown} …"
        self._show()
        self._run(self.commands[word])

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _run(self, command: ProviderCommand) -> None:
        """Ask the provider; the answer is shown as it came."""
        outcome = run_provider_command(command, confirmed=True)
        verb = "destroy" if command.action == "destroy" else "stop"
        if outcome.returncode == 0:
            text = (f"{self.info.display_name} was asked to {verb} instance {self.info.instance_id}. "
                    "This connection will drop.")
        else:
            text = f"{self.info.display_name} said no (exit {outcome.returncode}): use the console instead."
        if outcome.output:
            text += f"\n{outcome.output[-400:]}"
        self.app.call_from_thread(self._done, text)

    def _done(self, text: str) -> None:
        self.result = text
        self.phase = "done"
        self._show()

    def action_close(self) -> None:
        """Close the dialog."""
        self.dismiss(self.result)


class PriceDialog(ModalScreen["float | None"]):
    """Type the box's hourly price; it is remembered for this machine."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="PriceDialog")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def __init__(self, current: float | None = None) -> None:
        super().__init__()
        self.current = current  # the price already set, shown to edit rather than an example to retype

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Hourly price of this box", classes="dialog-title")
            now = f"now {self.current:g}" if self.current is not None else "e.g. 0.89"
            yield Static(f"Dollars per hour, as the provider shows it ({now}). Remembered for this machine.")
            yield Input(value=f"{self.current:g}" if self.current is not None else "", placeholder="0.89",
                        id="price-input")
            yield Static(_keys(("enter", "save"), ("esc", "cancel")), classes="dialog-keys")

    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        try:
            price = parse_price(event.value)
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
            return
        try:
            remember_hourly_price(price)
        except OSError as exc:
            self.notify(f"price used but not remembered: {exc.strerror}", severity="warning")
        self.dismiss(price)

    def action_close(self) -> None:
        """Close without changing the price."""
        self.dismiss(None)

