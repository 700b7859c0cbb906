"""CostMeter: one footer line with the job's elapsed time and what it and the box have cost so far."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from textual.reactive import reactive
from textual.widgets import Static

from ioncannon.job.units import duration, money
from ioncannon.rental.costs import CostSnapshot, cost_snapshot


class CostMeter(Static):
    """"⏱ 00:12:31 · $0.18 this job · $1.02 since boot", refreshed every second."""

    DEFAULT_CSS = """
    CostMeter {
        height: 1;
        width: 1fr;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    hourly_price: reactive[float | None] = reactive(None)
    job_started_at: reactive[float | None] = reactive(None)

    def __init__(
        self,
        hourly_price: float | None,
        job_started_at: float | None,
        *,
        clock: Callable[[], float] = time.time,
        proc: Path = Path("/proc"),
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("", id=id, classes=classes)
        self._clock = clock
        self._proc = proc
        self.set_reactive(CostMeter.hourly_price, hourly_price)
        self.set_reactive(CostMeter.job_started_at, job_started_at)

    def on_mount(self) -> None:
        """Start the once-a-second tick."""
        self.tick()
        self.set_interval(1.0, self.tick)

    def watch_hourly_price(self) -> None:
        """A new price shows at once, not on the next tick."""
        self.tick()

    def watch_job_started_at(self) -> None:
        """A job that just started shows at once."""
        self.tick()

    def tick(self) -> None:
        """Recompute the line from the clock and /proc."""
        snapshot = cost_snapshot(self.hourly_price, self.job_started_at, now=self._clock(), proc=self._proc)
        self.update(meter_text(snapshot))


def meter_text(snapshot: CostSnapshot) -> str:
    """The footer line: "⏱ 00:12:31 · $0.18 this job · $1.02 since boot"."""
    parts = [f"⏱ {duration(snapshot.job_elapsed_s, 'clock')}"]
    if snapshot.hourly_price is None:
        parts.append("price not set")
        if snapshot.instance_uptime_s is not None:
            parts.append(f"up {duration(snapshot.instance_uptime_s, 'clock')}")
        return " · ".join(parts)
    if snapshot.job_elapsed_s is not None:
        parts.append(f"{money(snapshot.job_spend)} this job")
    if snapshot.instance_uptime_s is not None:
        parts.append(f"{money(snapshot.instance_spend)} since boot")
    return " · ".join(parts)
