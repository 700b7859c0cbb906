"""Finish: where every file is, what it cost, how to copy it home, wipe the subject, destroy the box."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import HorizontalScroll, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ioncannon.job.fsio import dir_size
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.job.stages import STAGES
from ioncannon.job.state import JobState, read_state
from ioncannon.job.timings import read_estimate, stage_seconds
from ioncannon.job.units import duration, money
from ioncannon.rental import bundle as bundles
from ioncannon.rental.costs import (
    BUDGET_HINT,
    job_started_at,
    remembered_hourly_price,
    spend,
)
from ioncannon.rental.download import DownloadCommands, write_download_file
from ioncannon.rental.provider import (
    STILL_BILLS,
    ProviderCommand,
    ProviderError,
    build_command,
    console_steps,
    console_where,
    detect_provider,
)
from ioncannon.rental.wipe import NOT_A_SECURE_ERASE, WipeReceipt, plan_wipe
from ioncannon.tui.dialogs.finish import BundleDialog, DestroyDialog, PriceDialog, WipeDialog
from ioncannon.tui.widgets.meter import CostMeter

_LABEL_WIDTH = 11


def _row(label: str, value: str | Text, style: str = "") -> Text:
    return Text.assemble((f"{label:<{_LABEL_WIDTH}}", "dim"), (value, style) if isinstance(value, str) else value, "\n")


DOWNLOAD_NAME = JobPaths(".").download_file.name


# How the line under the summary names a section still below the fold (it must fit 80 columns).
SHORT_HEADINGS = {"Where your files are": "your files", "Time and money": "time and money",
                  "Copy it home: run on YOUR computer": "download commands", "Your subject's data": "subject's data",
                  "Stopping the meter": "stopping the meter"}


class FinishScreen(Screen[None]):
    """The last step: files, time and money, download commands, the wipe, and destroying the instance."""

    DEFAULT_CSS = """
    FinishScreen { layout: vertical; }
    FinishScreen > .titlebar { height: 1; background: $primary; color: $text; padding: 0 1; }
    FinishScreen > #finish-body { height: 1fr; padding: 0 1; }
    FinishScreen #finish-body > Static { width: 1fr; }
    FinishScreen #finish-body > .finish-section { padding-left: 2; }
    FinishScreen .finish-heading { text-style: bold; color: $accent; margin-top: 1; }
    FinishScreen #finish-outcome { margin-top: 1; }
    FinishScreen #finish-commands { height: auto; scrollbar-size-horizontal: 1; }
    FinishScreen #finish-commands:focus { background: $boost; }
    FinishScreen #finish-download { width: auto; }
    FinishScreen > #finish-more { height: 1; padding: 0 1; color: $warning; }
    FinishScreen > #finish-destroy {
        height: auto; border: heavy $error; padding: 0 1; margin: 0 0;
    }
    """
    HELP_TITLE = "Finished"
    HELP_EXTRA = (("↑ ↓ pgup pgdn", "scroll the summary (its commands and privacy part are further down)"),
                  ("tab", "to the download line; ← → then scroll it sideways"))
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "gallery", "Images"),
        Binding("b", "bundle", "Bundle"),
        Binding("w", "wipe", "Wipe"),
        Binding("d", "destroy", "Destroy box"),
        Binding("p", "price", "Price"),
        Binding("c", "copy", "Copy rsync"),
    ]

    def __init__(self, paths: JobPaths, spec: JobSpec, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.paths, self.spec = paths, spec
        self.env = dict(os.environ if env is None else env)
        self.provider = detect_provider(self.env)
        self.hourly_price = spec.hourly_price if spec.hourly_price is not None else remembered_hourly_price()
        self.started_at = job_started_at(paths)
        self.commands: DownloadCommands | None = None
        self.job_state = JobState()  # read on every refresh_sections()

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        title = Text.assemble((" ioncannon ", "bold"), ("· finished · ", "dim"), (self.spec.name, "bold"),
                              ("   ? keys", "dim"))
        yield Static(title, classes="titlebar")
        with VerticalScroll(id="finish-body"):
            yield Static(id="finish-outcome")
            yield Static("Where your files are", classes="finish-heading")
            yield Static(id="finish-files", classes="finish-section")
            yield Static("Time and money", classes="finish-heading")
            yield Static(id="finish-money", classes="finish-section")
            yield Static("Copy it home: run on YOUR computer", classes="finish-heading")
            # Commands stay on one line each, however narrow the terminal: a wrapped command breaks copy-paste.
            with HorizontalScroll(id="finish-commands", classes="finish-section"):
                yield Static(id="finish-download")
            yield Static(id="finish-download-note", classes="finish-section")
            yield Static("Your subject's data", classes="finish-heading")
            yield Static(id="finish-subject", classes="finish-section")
            yield Static("Stopping the meter", classes="finish-heading")
            yield Static(id="finish-stopping", classes="finish-section")
        yield Static("", id="finish-more")
        yield Static(self._last_words(), id="finish-destroy")
        # the wizard's clock and /proc, so the meter agrees with every other screen (and tests can fix them)
        yield CostMeter(
            self.hourly_price, self.started_at,
            clock=getattr(self.app, "clock", time.time), proc=getattr(self.app, "proc", Path("/proc")),
        )
        yield Footer()

    def on_mount(self) -> None:
        """Write DOWNLOAD.txt, fill every section, and let the arrow keys scroll."""
        self.refresh_sections()
        body = self.query_one("#finish-body", VerticalScroll)
        body.focus()
        self.watch(body, "scroll_y", lambda _: self._say_what_is_below(), init=False)
        self.watch(body, "max_scroll_y", lambda _: self._say_what_is_below(), init=False)
        self.call_after_refresh(self._say_what_is_below)

    def _say_what_is_below(self) -> None:
        """Name the sections still below the fold (a small terminal hides the commands and the privacy part)."""
        body = self.query_one("#finish-body", VerticalScroll)
        bottom = body.scroll_y + body.scrollable_content_region.height
        headings = body.query(".finish-heading").results(Static)
        below = [SHORT_HEADINGS.get(str(h.content), str(h.content)) for h in headings if h.virtual_region.y >= bottom]
        more = self.query_one("#finish-more", Static)
        more.display = bool(below)
        if below:
            more.update(Text.assemble(("↓ below: ", "bold"), " · ".join(below), (" (↓ scrolls)", "dim")))

    def refresh_sections(self) -> None:
        """Re-read the job folder (after a bundle, a wipe or a new price)."""
        self.job_state = read_state(self.paths)  # once per refresh: the outcome and money sections share it
        try:
            self.commands = write_download_file(self.paths, self.spec, self.env)
        except OSError as exc:
            self.notify(f"DOWNLOAD.txt not written: {exc.strerror}", severity="warning")
        sections = {
            "#finish-outcome": self._outcome, "#finish-files": self._files, "#finish-money": self._money,
            "#finish-download": self._download, "#finish-download-note": self._download_note,
            "#finish-subject": self._subject, "#finish-stopping": self._stopping,
        }
        for selector, build in sections.items():
            text = build()
            text.rstrip()
            self.query_one(selector, Static).update(text)
        self.refresh_bindings()

    # ------------------------------------------------------------------ sections

    def _outcome(self) -> Text:
        state = self.job_state
        if state.status == "finished":
            return Text.assemble(
                ("✔ Done. ", "bold green"), f"{self.spec.instance_prompt} is trained and its images are made."
            )
        if state.status == "stopped" and state.message.startswith("budget reached"):
            return Text.assemble(("■ Stopped: ", "bold yellow"), state.message, "\n", BUDGET_HINT)
        if state.status == "stopped":
            return Text.assemble(("■ Stopped. ", "bold yellow"), state.message or "", "\n", state.hint)
        if state.status == "failed":
            return Text.assemble(("✗ Failed: ", "bold red"), state.message, "\n", state.hint)
        return Text.assemble(("● ", "bold"), f"job status: {state.status}")

    def _files(self) -> Text:
        text = Text.assemble((str(self.paths.root), "bold"), "\n")
        models = sorted(self.paths.trained_models.glob("*")) if self.paths.trained_models.is_dir() else []
        for model in models:
            size = dir_size(model) if model.is_dir() else model.stat().st_size
            name = f"trained_models/{model.name}{'/' if model.is_dir() else ''}"
            text.append_text(_row("model", f"{name}  {bundles.human_bytes(size)}"))
        if not models:
            text.append_text(_row("model", "none yet", "dim"))
        images = list(self.paths.outputs.glob("*/samples/*")) if self.paths.outputs.is_dir() else []
        collages = [p for p in self.paths.outputs.glob("*/*") if p.is_file()] if self.paths.outputs.is_dir() else []
        folders = len({p.parent.parent for p in images})
        text.append_text(
            _row("images", f"outputs/ · {len(images)} images in {folders} folders, {len(collages)} collages")
        )
        if collages:
            text.append_text(_row("", "g: look at them and star the best for the bundle", "dim"))
        sheets = [p for p in self.paths.outputs.glob("*") if p.is_file()] if self.paths.outputs.is_dir() else []
        for sheet in sheets:
            text.append_text(_row("overview", f"outputs/{sheet.name}"))
        archive = bundles.archive_path(self.paths, self.spec)
        if archive.is_file():
            text.append_text(
                _row("bundle", f"{archive.name}  {bundles.human_bytes(archive.stat().st_size)}", "bold green")
            )
        else:
            text.append_text(_row("bundle", "not written yet: press b", "yellow"))
        text.append_text(_row("commands", DOWNLOAD_NAME))
        return text

    def _money(self) -> Text:
        now = getattr(self.app, "clock", time.time)()  # the wizard's clock, as the meter below uses
        state = self.job_state
        since_start = None if self.started_at is None else now - self.started_at
        text = _row(
            "job time",
            f"{duration(since_start, 'clock')} since it started · {duration(state.elapsed_s, 'clock')} running",
        )
        text.append_text(self._stage_times())
        if self.hourly_price is None:
            text.append_text(_row("cost", "unknown: press p and type the hourly price", "yellow"))
            return text
        job_cost = money(spend(self.hourly_price, since_start or 0))
        rate = f" this job at {money(self.hourly_price)}/h (p: change)"
        text.append_text(_row("cost", Text.assemble((job_cost, "bold"), rate)))
        text.append_text(_row("", "the footer counts on: the box bills until it is destroyed", "dim"))
        return text

    def _stage_times(self) -> Text:
        """Each stage's real time next to the estimate the hardware step showed (jobs created with one)."""
        estimate = read_estimate(self.paths)
        text = Text()
        if not estimate:
            return text
        real = stage_seconds(self.paths)
        head = "stages"
        for stage in STAGES:
            if stage.name not in estimate and stage.name not in real:
                continue
            took = duration(real[stage.name], "short") if stage.name in real else "not run"
            guess = f"estimated {duration(estimate[stage.name], 'rough').removeprefix('about ')}" \
                if stage.name in estimate else ""
            text.append_text(_row(head, Text.assemble(f"{stage.label:<13}", (f"{took:>8}", "bold"), f"   {guess}")))
            head = ""
        if real:
            total = duration(sum(real.values()), "short")
            guess = duration(sum(estimate.values()), "rough").removeprefix("about ")
            text.append_text(_row("", Text.assemble(f"{'all stages':<13}", (f"{total:>8}", "bold"),
                                                    f"   estimated {guess}")))
        return text

    def _download(self) -> Text:
        if self.commands is None:
            return Text("(download commands unavailable)", style="dim")
        return Text.assemble((self.commands.scp, "bold"), "\n", (self.commands.rsync, "bold"), no_wrap=True)

    def _download_note(self) -> Text:
        text = Text()
        if self.commands is not None and self.commands.note:
            text.append(f"{self.commands.note}\n", style="yellow")
        text.append("one line each (tab, then ←/→ scrolls) · rsync resumes if the link drops · "
                    f"c copies it to your clipboard · also in {DOWNLOAD_NAME}", style="dim")
        return text

    def _subject(self) -> Text:
        wiped = bundles.read_finish_record(self.paths).get("wipe")
        if isinstance(wiped, dict):
            removed = wiped.get("removed", [])
            total = sum(int(i.get("bytes", 0)) for i in removed)
            when = time.strftime("%H:%M", time.localtime(float(wiped.get("at", 0))))
            summary = f"at {when}: {bundles.human_bytes(total)} in {len(removed)} places.\n"
            text = Text.assemble(("✔ Wiped ", "bold green"), summary)
        else:
            items = plan_wipe(self.paths, self.spec)
            size = bundles.human_bytes(sum(i.bytes for i in items))
            what = ", ".join(i.label for i in items) or "nothing"
            text = Text.assemble(("Still on this box: ", "yellow"), f"{what} ({size}).\n",
                                 "Once the download is home, w wipes them; class images are kept.\n")
        text.append(NOT_A_SECURE_ERASE, style="dim")
        return text

    def _stopping(self) -> Text:
        text = Text()
        for i, step in enumerate(console_steps(self.provider), 1):
            text.append(f"{i}. {step}\n")
        command = self._command("destroy")
        if command is not None:
            text.append("Or from here: d runs ")
            text.append(command.shown, style="bold")
        else:
            text.append(
                "ioncannon can't do it from inside this box (no provider CLI and key): use the console.", style="dim"
            )
        return text

    def _last_words(self) -> Text:
        text = Text()
        text.append(" DESTROY this instance once your files are home: not just stop it. ", style="bold reverse red")
        text.append(f"\n{STILL_BILLS}")
        if self.provider.can_act_from_inside:
            text.append("  d: destroy it from here", style="bold")
        text.append(f"\nWhere: {console_where(self.provider)}")
        return text

    def _command(self, action: str) -> ProviderCommand | None:
        try:
            return build_command(self.provider, action, self.env)  # type: ignore[arg-type]
        except ProviderError:
            return None

    # ------------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer d only where the provider's CLI and key are on this box."""
        if action == "destroy":
            return self.provider.can_act_from_inside
        return True

    def action_gallery(self) -> None:
        """Page the collages and images, star the ones for the bundle, see the contact sheet."""
        from ioncannon.tui.screens.gallery import GalleryScreen

        self.app.push_screen(GalleryScreen(self.paths, self.spec), lambda _none: self.refresh_sections())

    def action_bundle(self) -> None:
        """Show the bundle's size, then write it."""
        self.app.push_screen(BundleDialog(self.paths, self.spec), lambda _archive: self.refresh_sections())

    def action_wipe(self) -> None:
        """Wipe the subject's data after the typed job name."""

        def done(receipt: WipeReceipt | None) -> None:
            self.refresh_sections()
            if receipt is not None:
                self.notify(f"Wiped {bundles.human_bytes(receipt.total_bytes)}. Now destroy the instance.")

        self.app.push_screen(WipeDialog(self.paths, self.spec), done)

    def action_destroy(self) -> None:
        """Stop or destroy this instance with the provider's CLI, after the typed word."""
        destroy, stop = self._command("destroy"), self._command("stop")
        if destroy is None or stop is None:
            return
        self.app.push_screen(DestroyDialog(self.paths, self.provider, {"destroy": destroy, "stop": stop}),
                             lambda _result: self.refresh_sections())

    def action_price(self) -> None:
        """Type the hourly price (remembered for this machine)."""

        def done(price: float | None) -> None:
            if price is not None:
                self.hourly_price = price
                self.query_one(CostMeter).hourly_price = price
                self.refresh_sections()

        self.app.push_screen(PriceDialog(self.hourly_price), done)

    def action_copy(self) -> None:
        """Copy the rsync command to the clipboard of the computer you type on (OSC 52)."""
        if self.commands is not None:
            # OSC 52: the terminal on the person's computer puts it on their clipboard, over SSH too.
            self.app.copy_to_clipboard(self.commands.rsync)
            self.notify(f"rsync command sent to your clipboard (if the terminal allows); also in {DOWNLOAD_NAME}.")
