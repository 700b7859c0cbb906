"""Every input's stated bound, checked before the work: here the prompt pack's size, styles and prompt length."""

from __future__ import annotations

import os
from pathlib import Path

from ioncannon.job.prompts import PromptPackError, PromptStyle, load_pack

# A pack is a few kilobytes of TOML; a bigger file is the wrong file, and parsing it would cost memory for nothing.
MAX_PACK_BYTES = 1 << 20
# Each enabled style makes images_per_prompt images and one collage: 200 styles x 100 images is already days.
MAX_PACK_STYLES = 200
# CLIP reads 77 tokens (T5 for Flux 512); a prompt far past that is a paste gone wrong, not a style.
MAX_PROMPT_CHARS = 2000


def pack_styles(path: str | Path | None) -> list[PromptStyle]:
    """The pack's styles once its size, styles and prompts are within bounds (PromptPackError: one sentence)."""
    if path:
        pack = Path(path).expanduser()
        try:
            size = os.stat(pack).st_size
        except FileNotFoundError:
            raise PromptPackError(f"prompt pack {pack} is not a file: give a prompt pack .toml, or leave it empty "
                                  "for the built-in pack.") from None
        except OSError as exc:
            raise PromptPackError(f"prompt pack {pack} can't be read ({exc.strerror}): check the path.") from None
        if not pack.is_file():
            raise PromptPackError(f"prompt pack {pack} is not a file: give a prompt pack .toml, or leave it empty.")
        if size > MAX_PACK_BYTES:
            raise PromptPackError(f"prompt pack {pack.name} is {size:,} bytes: a pack is at most "
                                  f"{MAX_PACK_BYTES:,} bytes; give the pack's .toml file.")
    styles = load_pack(path or None)
    check_styles(styles)
    return styles


def check_styles(styles: list[PromptStyle]) -> None:
    """Raise PromptPackError (one sentence) when the pack has too many styles or a prompt past its bound."""
    if len(styles) > MAX_PACK_STYLES:
        raise PromptPackError(f"the prompt pack has {len(styles):,} styles: keep at most {MAX_PACK_STYLES} "
                              "(turn the others off or split the pack).")
    for n, style in enumerate(styles, start=1):
        longest = max(len(style.prompt), len(style.negative))
        if longest > MAX_PROMPT_CHARS:
            raise PromptPackError(f"the prompt pack's style {n} ({style.keyword}) has a prompt of {longest:,} "
                                  f"characters: keep each under {MAX_PROMPT_CHARS:,}.")
