"""What the box costs: the remembered hourly price, uptime, spend so far, estimates and the budget cap."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ioncannon.job.events import RunnerStarted, parse_event
from ioncannon.job.fsio import StateFileError, read_json, write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.job.units import money

PRICES_FILE = "prices.json"
# Provider variables that name this very instance; the first present keys the remembered price.
_INSTANCE_VARIABLES = ("CONTAINER_ID", "RUNPOD_POD_ID")


# --------------------------------------------------------------------------- the remembered price


def config_dir() -> Path:
    """Where ioncannon keeps per-user settings (honours XDG_CONFIG_HOME)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("ioncannon", appauthor=False))


def machine_key(env: Mapping[str, str] | None = None) -> str:
    """A name for this machine: the provider's instance id when it says one, else the host name."""
    env = os.environ if env is None else env
    for name in _INSTANCE_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return f"{name.lower()}:{value}"
    return f"host:{socket.gethostname()}"


def _read_prices(folder: Path) -> dict[str, dict[str, float]]:
    try:
        prices = read_json(folder / PRICES_FILE).get("prices", {})
    except StateFileError:
        return {}
    return prices if isinstance(prices, dict) else {}


def remembered_hourly_price(machine: str | None = None, folder: Path | None = None) -> float | None:
    """The hourly price typed earlier on this machine, or None if never asked (or the file is damaged)."""
    entry = _read_prices(folder or config_dir()).get(machine or machine_key(), {})
    price = entry.get("hourly_price") if isinstance(entry, dict) else None
    if isinstance(price, (int, float)) and price >= 0:
        return float(price)
    return None


def remember_hourly_price(price: float, machine: str | None = None, folder: Path | None = None) -> None:
    """Store the hourly price for this machine (atomically; other machines' prices are kept)."""
    if price < 0:
        raise ValueError("an hourly price cannot be negative")
    folder = folder or config_dir()
    prices = _read_prices(folder)
    prices[machine or machine_key()] = {"hourly_price": float(price), "set_at": time.time()}
    write_json(folder / PRICES_FILE, {"prices": prices})


def parse_price(text: str) -> float:
    """Read a typed price such as "0.89", "$0.89", "0,89/h"; raise ValueError with a readable reason."""
    cleaned = text.strip().lower().replace("$", "").replace("€", "").replace("£", "")
    for suffix in ("/hr", "/h", "per hour", "an hour"):
        cleaned = cleaned.removesuffix(suffix).strip()
    cleaned = cleaned.replace(",", ".")
    try:
        price = float(cleaned)
    except ValueError:
        raise ValueError(
            f"{text.strip() or 'an empty price'!s} is not a price: type dollars per hour, e.g. 0.89"
        ) from None
    if price < 0 or price != price or price > 1000:
        raise ValueError("an hourly price is between 0 and 1000 dollars")
    return price


# --------------------------------------------------------------------------- time on the box


def _read_float(path: Path, index: int) -> float | None:
    try:
        return float(path.read_text().split()[index])
    except (OSError, ValueError, IndexError):
        return None


def instance_uptime_s(proc: Path = Path("/proc")) -> float | None:
    """Seconds since this instance started, or None where /proc can't tell.

    In a container /proc/uptime is the *host's* uptime, which may be weeks; the rented
    instance began when PID 1 did, so its start tick is taken off (on a VM it is near 0).
    """
    uptime = _read_float(proc / "uptime", 0)
    if uptime is None:
        return None
    try:
        stat = (proc / "1" / "stat").read_text()
        # Field 22 (starttime, in clock ticks); the command name may hold spaces, so count after ')'.
        start_ticks = float(stat.rsplit(")", 1)[1].split()[19])
        started = start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        started = 0.0
    return max(0.0, uptime - started)


def job_started_at(paths: JobPaths) -> float | None:
    """When the job's first runner started (state.json, else the first RunnerStarted event), else job.json's time."""
    from ioncannon.job.state import read_state

    started = read_state(paths).started_at
    if started:
        return float(started)
    try:
        with open(paths.events_file, encoding="utf-8", errors="replace") as fh:  # a damaged byte skips one line
            for line in fh:
                event = parse_event(line)
                if isinstance(event, RunnerStarted):
                    return event.t
    except OSError:
        pass
    try:
        return paths.job_file.stat().st_mtime
    except OSError:
        return None


# --------------------------------------------------------------------------- money


def spend(hourly_price: float, seconds: float) -> float:
    """Dollars billed for `seconds` at `hourly_price` dollars per hour."""
    return hourly_price * max(0.0, seconds) / 3600.0


def estimate_cost(hourly_price: float | None, seconds: float) -> float | None:
    """What a run of `seconds` will cost; None without a price."""
    return None if hourly_price is None else spend(hourly_price, seconds)


@dataclass(frozen=True)
class CostSnapshot:
    """Time and money at one moment: since this job started and since the instance did."""

    hourly_price: float | None
    job_elapsed_s: float | None
    instance_uptime_s: float | None

    @property
    def job_spend(self) -> float | None:
        if self.hourly_price is None or self.job_elapsed_s is None:
            return None
        return spend(self.hourly_price, self.job_elapsed_s)

    @property
    def instance_spend(self) -> float | None:
        if self.hourly_price is None or self.instance_uptime_s is None:
            return None
        return spend(self.hourly_price, self.instance_uptime_s)


def cost_snapshot(
    hourly_price: float | None,
    job_started_at: float | None,
    now: float | None = None,
    proc: Path = Path("/proc"),
) -> CostSnapshot:
    now = time.time() if now is None else now
    elapsed = None if job_started_at is None else max(0.0, now - job_started_at)
    return CostSnapshot(hourly_price, elapsed, instance_uptime_s(proc))


# --------------------------------------------------------------------------- the budget cap


def budget_exceeded(
    spec: JobSpec, job_started_at: float | None, now: float | None = None, elapsed_s: float | None = None,
) -> str | None:
    """A message once the job's time or spend reached its cap; None while under it (or without a cap).

    Time is wall-clock since `job_started_at` (the box bills while a crashed runner waits too),
    unless the caller passes `elapsed_s` (e.g. run time summed over runner lifetimes).
    A money cap without an hourly price cannot be checked and is ignored (the wizard asks the price).
    """
    if elapsed_s is None:
        if job_started_at is None:
            return None
        elapsed_s = (time.time() if now is None else now) - job_started_at
    elapsed = max(0.0, elapsed_s)
    if spec.budget_minutes is not None and elapsed >= spec.budget_minutes * 60:
        return f"budget reached: {elapsed / 60:.0f} min of the {spec.budget_minutes:g} min cap"
    if spec.budget_money is not None and spec.hourly_price is not None:
        spent = spend(spec.hourly_price, elapsed)
        if spent >= spec.budget_money:
            return (
                f"budget reached: {money(spent)} of the {money(spec.budget_money)} cap "
                f"at {money(spec.hourly_price)}/h"
            )
    return None


BUDGET_HINT = (
    "The last checkpoint is kept. To go on, raise the cap and resume (`ioncannon resume`); "
    "to wrap up, bundle what is there and destroy the instance."
)


def budget_left_s(spec: JobSpec, job_started_at: float | None, now: float | None = None) -> float | None:
    """Seconds until the nearest cap, None with no (checkable) cap; never negative."""
    if job_started_at is None:
        return None
    now = time.time() if now is None else now
    elapsed = max(0.0, now - job_started_at)
    limits: list[float] = []
    if spec.budget_minutes is not None:
        limits.append(spec.budget_minutes * 60)
    if spec.budget_money is not None and spec.hourly_price:
        limits.append(spec.budget_money / spec.hourly_price * 3600)
    return max(0.0, min(limits) - elapsed) if limits else None
