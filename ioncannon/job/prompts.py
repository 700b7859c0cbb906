"""The prompt pack: styled prompts with the subject's token, loaded from and saved to TOML."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ioncannon.job import toml
from ioncannon.job.fsio import atomic_write_text, too_deep
from ioncannon.job.limits import MAX_PACK_BYTES, MAX_PROMPT_CHARS, MAX_STYLES

TOKEN = "{token}"
_KEYWORD = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class PromptPackError(Exception):
    """The prompt pack file is missing, unreadable or has an invalid style; the message says which."""


@dataclass(frozen=True)
class PromptStyle:
    """One style of the pack: its keyword names the output folder, its seed makes it reproducible."""

    keyword: str
    prompt: str
    negative: str
    seed: int
    enabled: bool = True

    def render(self, identifier: str, class_name: str) -> str:
        """The prompt with `{token}` replaced by the subject, e.g. 'sks man'."""
        return self.prompt.replace(TOKEN, f"{identifier} {class_name}")


def default_pack_path() -> Path:
    """The built-in pack: shipped inside the package when installed, else the source tree's assets/."""
    from ioncannon.job.assets import assets_dir

    return assets_dir() / "prompt_pack.toml"


def validate_styles(styles: list[PromptStyle], source: str = "prompt pack") -> None:
    """Raise PromptPackError naming the first bad style (missing token, duplicate keyword, …)."""
    if not styles:
        raise PromptPackError(f"{source} has no styles. Add at least one [[style]] with keyword, prompt and seed.")
    if len(styles) > MAX_STYLES:
        raise PromptPackError(f"{source} has {len(styles):,} styles; a pack holds at most {MAX_STYLES}: "
                              "keep the styles you want and split the rest into another pack.")
    seen: set[str] = set()
    for n, style in enumerate(styles, start=1):
        where = f"{source}, style {n} ({style.keyword or 'no keyword'})"
        if not _KEYWORD.match(style.keyword):
            raise PromptPackError(
                f"{where}: keyword {style.keyword!r} must be lower-case letters, digits, '-' or '_' "
                "(it becomes a folder name)."
            )
        if style.keyword in seen:
            raise PromptPackError(f"{where}: keyword {style.keyword!r} is used twice; every style needs its own.")
        seen.add(style.keyword)
        if TOKEN not in style.prompt:
            raise PromptPackError(
                f"{where}: the prompt has no {TOKEN}. Put {TOKEN} where the subject goes, "
                f"e.g. 'a portrait of {TOKEN}, studio light'."
            )
        longest = max(len(style.prompt), len(style.negative))
        if longest > MAX_PROMPT_CHARS:
            raise PromptPackError(f"{where}: a prompt of {longest:,} characters; keep each under "
                                  f"{MAX_PROMPT_CHARS} (the text encoder reads only the first 77 tokens).")
        if style.seed < 0 or style.seed >= 2**32:
            raise PromptPackError(f"{where}: seed {style.seed} must be between 0 and 4294967295.")


def _style_from_table(table: dict[str, Any], n: int, source: str) -> PromptStyle:
    missing = [k for k in ("keyword", "prompt", "seed") if k not in table]
    if missing:
        raise PromptPackError(f"{source}, style {n}: missing {', '.join(missing)}.")
    try:
        return PromptStyle(
            keyword=str(table["keyword"]).strip(),
            prompt=str(table["prompt"]).strip(),
            negative=str(table.get("negative", "")).strip(),
            seed=int(table["seed"]),
            enabled=bool(table.get("enabled", True)),
        )
    except (TypeError, ValueError) as exc:
        raise PromptPackError(f"{source}, style {n}: {exc}. The seed must be a whole number.") from exc


def _read_pack(pack: Path) -> bytes:
    """The pack's bytes, its size checked before a byte is read (a FIFO in its place never blocks)."""
    fd = os.open(pack, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PromptPackError(f"Prompt pack {pack} is not a regular file: give a .toml file.")
        if info.st_size > MAX_PACK_BYTES:
            raise PromptPackError(f"Prompt pack {pack.name} is {info.st_size:,} bytes; a pack is at most "
                                  f"{MAX_PACK_BYTES:,} bytes: give a pack of a few hundred styles at most.")
        return os.read(fd, MAX_PACK_BYTES + 1)
    finally:
        os.close(fd)


def load_pack(path: str | Path | None = None) -> list[PromptStyle]:
    """Read and validate a TOML pack (`[[style]]` tables); the built-in pack when `path` is None or empty."""
    pack = Path(path) if path else default_pack_path()
    try:
        data = toml.loads(_read_pack(pack).decode("utf-8"))
        if too_deep(data):
            raise RecursionError
    except RecursionError as exc:
        raise PromptPackError(f"Prompt pack {pack.name} nests too deeply to be a pack: write [[style]] tables.") \
            from exc
    except FileNotFoundError as exc:
        raise PromptPackError(
            f"Prompt pack {pack} does not exist. Check the path, or leave it empty for the built-in pack."
        ) from exc
    except OSError as exc:
        raise PromptPackError(f"Prompt pack {pack} could not be read: {exc.strerror}.") from exc
    except (toml.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PromptPackError(f"Prompt pack {pack.name} is not valid TOML: {exc}.") from exc
    tables = data.get("style", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise PromptPackError(f"Prompt pack {pack.name}: styles must be [[style]] tables.")
    styles = [_style_from_table(t, n, pack.name) for n, t in enumerate(tables, start=1)]
    validate_styles(styles, pack.name)
    return styles


def save_pack(path: str | Path, styles: list[PromptStyle]) -> Path:
    """Validate and atomically write `styles` as a TOML pack that `load_pack` reads back unchanged."""
    import tomli_w  # only writing needs it

    path = Path(path)
    validate_styles(list(styles), path.name)
    body = {
        "style": [
            {"keyword": s.keyword, "prompt": s.prompt, "negative": s.negative, "seed": s.seed, "enabled": s.enabled}
            for s in styles
        ]
    }
    header = '# ioncannon prompt pack: {token} becomes the subject, e.g. "sks man". Seeds make images reproducible.\n\n'
    atomic_write_text(path, header + tomli_w.dumps(body))
    return path


def enabled_styles(styles: list[PromptStyle]) -> list[PromptStyle]:
    return [s for s in styles if s.enabled]
