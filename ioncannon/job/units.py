"""The one money formatter and the one duration formatter, for every screen, command and message."""

from __future__ import annotations

from typing import Literal

DurationStyle = Literal["timer", "clock", "short", "rough"]


def money(dollars: float | None) -> str:
    """`$1,234.50`; `<$0.01` for a positive amount too small to show; `$?` when unknown."""
    if dollars is None:
        return "$?"
    return f"${dollars:,.2f}" if dollars >= 0.005 or dollars == 0 else "<$0.01"


def duration(seconds: float | None, style: DurationStyle = "timer") -> str:
    """Seconds as text, in one of four styles.

    timer: `4:05`, `1:02:03` (progress and ETA; `–` when unknown);
    clock: `00:12:31`, fixed width for the cost meter (`--:--:--` when unknown; hours grow past 99);
    short: `45s`, `3m 07s`, `1h 02m` (one line per event in the headless run; `-` when unknown);
    rough: `about 40 s`, `about 12 min`, `about 1 h 35 min` (estimates).
    """
    unknown = seconds is None or seconds != seconds
    if style == "clock":
        if unknown:
            return "--:--:--"
        whole = int(max(0.0, seconds or 0.0))
        return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    if style == "short":
        if unknown:
            return "-"
        s = int(seconds or 0)
        if s >= 3600:
            return f"{s // 3600}h {s % 3600 // 60:02d}m"
        return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"
    if style == "rough":
        value = 0.0 if unknown else float(seconds or 0.0)
        if value < 90:
            return f"about {max(1, round(value))} s"
        minutes = round(value / 60)
        if minutes < 90:
            return f"about {minutes} min"
        hours, minutes = divmod(minutes, 60)
        return f"about {hours} h {minutes:02d} min"
    if unknown or (seconds or 0.0) < 0:
        return "–"
    total = int(round(seconds or 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def count(n: int, one: str, many: str | None = None) -> str:
    """`1 place`, `3 places`: a number with its noun in the form that agrees (`many` when +s is wrong)."""
    return f"{n} {one if n == 1 else many or one + 's'}"
