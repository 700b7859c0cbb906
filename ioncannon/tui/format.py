"""Small text formatters shared by the screens (pure)."""

from __future__ import annotations

from ioncannon.job.printable import printable
from ioncannon.job.units import money
from ioncannon.rental import costs


def cost(seconds: float, hourly_price: float | None) -> str:
    """Cost of `seconds` at the hourly price, or a hint to type the price."""
    if hourly_price is None:
        return "type the hourly price to see the cost"
    return money(costs.spend(hourly_price, seconds))


def parse_price(text: str) -> float | None:
    """The engine's price reader (`2.5`, `$2.50`, `2,50/h` → 2.5) for a field being typed: None until valid."""
    try:
        return costs.parse_price(text)
    except ValueError:
        return None


def bar(done: int, total: int, width: int) -> str:
    """A plain text bar (no animation, so screenshots are stable)."""
    width = max(1, width)
    fraction = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled)


def rate(value: float, unit: str = "it") -> str:
    if value <= 0:
        return f"– {unit}/s"
    if value < 1:
        return f"{1 / value:.1f} s/{unit}"
    return f"{value:.1f} {unit}/s"


def gib(value: float) -> str:
    return f"{value:.1f} GiB"


def parse_budget(text: str) -> tuple[float | None, float | None]:
    """A typed cap as (dollars, minutes): `20`/`$20` → dollars; `90m`, `90 min`, `1.5h` → minutes; empty → no cap.

    Raises ValueError saying what to type instead.
    """
    cleaned = text.strip().lower().replace(",", ".").replace(" ", "")
    if not cleaned:
        return None, None
    units = (("minutes", 1.0), ("minute", 1.0), ("mins", 1.0), ("min", 1.0), ("m", 1.0),
             ("hours", 60.0), ("hour", 60.0), ("hrs", 60.0), ("hr", 60.0), ("h", 60.0))
    for suffix, scale in units:
        if cleaned.endswith(suffix):
            number = _positive(cleaned.removesuffix(suffix), text)
            return None, number * scale
    return _positive(cleaned.lstrip("$€£"), text), None


def _positive(number: str, typed: str) -> float:
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"'{typed.strip()}' is not a budget: type dollars (20) or minutes (90m)") from None
    if not 0 < value < 1_000_000 or value != value:
        raise ValueError("a budget cap is more than zero")
    return value


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters with "…" where it was cut (the full text is shown elsewhere)."""
    if width <= 0:
        return ""
    text = printable(text)  # table cells show file names: never a raw escape sequence
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def flexible_width(total: int, fixed: int, columns: int, minimum: int) -> int:
    """What is left of a table `total` wide for its one flexible column, after the `fixed` ones and cell padding."""
    scrollbar = 2
    return max(minimum, total - fixed - 2 * columns - scrollbar)
