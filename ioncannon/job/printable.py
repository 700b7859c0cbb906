"""The one sanitiser for outside text (file names, paths, model metadata, exception text) on its way to a person."""

from __future__ import annotations

from typing import Any


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: Any, limit: int | None = None) -> str:
    """`value` as one line a terminal shows as written: control characters (ESC, BEL, newlines), direction
    overrides (U+202E) and undecodable bytes become visible escapes such as \\x1b; cut to `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def printable_lines(text: str) -> str:
    """Our own multi-line text with outside parts in it: each line made printable, the line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))
