"""The live-progress pieces of the job screens: stage checklist, a progress panel and the loss sparkline."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from ioncannon.job.download import size_text
from ioncannon.job.events import Progress
from ioncannon.job.stages import label as stage_label
from ioncannon.job.units import duration
from ioncannon.tui import format as fmt

_MARK_STYLES = {"✓": "bold green", "▶": "bold yellow", "✗": "bold red", "·": "dim", "–": "dim"}


class StageList(Static):
    """One line: ✓ photos ✓ class images ▶ train · export …"""

    DEFAULT_CSS = "StageList { height: auto; width: 1fr; }"

    def show(self, marks: Sequence[tuple[str, str]]) -> None:
        text = Text()
        for i, (stage, mark) in enumerate(marks):
            if i:
                text.append("  ")
            style = _MARK_STYLES.get(mark, "")
            text.append(mark + " ", style=style)
            label_style = {"▶": "bold", "·": "dim", "–": "dim strike"}.get(mark, "")
            text.append(stage_label(stage), style=label_style)
        self.update(text)


class ProgressPanel(Vertical):
    """A titled bar with done/total and a line of numbers (rate, ETA, loss)."""

    DEFAULT_CSS = """
    ProgressPanel { height: auto; width: 1fr; }
    ProgressPanel > .progress-title { height: 1; text-style: bold; }
    ProgressPanel > .progress-bar { height: 1; }
    ProgressPanel > .progress-stats { height: 1; color: $text-muted; }
    """

    def __init__(self, unit: str = "steps", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.unit = unit

    def compose(self) -> ComposeResult:
        yield Static("waiting for the runner…", classes="progress-title")
        yield Static(fmt.bar(0, 0, 40), classes="progress-bar")
        yield Static("", classes="progress-stats")

    def show(self, title: str, progress: Progress | None, extra: str = "", live: bool = True) -> None:
        """Draw `progress`; rate and ETA only while `live` (a stopped job has neither)."""
        done, total = (progress.done, progress.total) if progress else (0, 0)
        width = max(10, (self.size.width or 60) - 22)
        count = f" {done}/{total} {self.unit}" if total else ""
        if self.unit == "bytes" and total:  # the download: 1.2 GB/3.4 GB and MB/s
            count = f" {size_text(done)}/{size_text(total)}"
        self.query_one(".progress-title", Static).update(title)
        self.query_one(".progress-bar", Static).update(
            Text.assemble((fmt.bar(done, total, width), "green"), count)
        )
        stats: list[str] = []
        if progress is not None and total:
            if live and self.unit == "bytes":
                stats.append(f"{size_text(progress.rate)}/s" if progress.rate else "measuring the speed")
                stats.append(f"ETA {duration(progress.eta_s)}")
            elif live:
                unit = "it" if self.unit == "steps" else "img"
                stats.append(fmt.rate(progress.rate, unit))
                stats.append(f"ETA {duration(progress.eta_s)}")
            if progress.loss is not None:
                stats.append(f"loss {progress.loss:.4f}")
        if extra:
            stats.append(extra)
        self.query_one(".progress-stats", Static).update(" · ".join(stats))


class LossSparkline(Vertical):
    """The training loss so far as bars, with its latest value and the range the bars span."""

    DEFAULT_CSS = """
    LossSparkline { height: 1fr; width: 1fr; }
    LossSparkline > Sparkline { height: 1fr; }
    LossSparkline > .loss-caption { height: 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Sparkline([], summary_function=max)
        yield Static("loss: no steps yet", classes="loss-caption")

    def show(self, losses: Sequence[float]) -> None:
        values = [v for v in losses if v == v]  # NaN would flatten the whole line
        self.query_one(Sparkline).data = list(values) or []
        caption = "loss: no steps yet"
        if values:
            # the bars run from the lowest loss (bottom) to the highest (top): say so, or heights mean nothing
            caption = f"loss {values[-1]:.4f} · bars {min(values):.3f}–{max(values):.3f} · {len(values)} pts"
        self.query_one(".loss-caption", Static).update(caption)
