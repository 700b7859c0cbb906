"""The base model's CLIP tokenizer for the identifier linter, when it can be had without a fuss (call from a worker)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("ioncannon.tui")

# CLIP's byte-level BPE has 512 base symbols before any merge: fewer means files were missing and
# the tokenizer was built empty (recent transformers do that instead of raising).
MIN_VOCAB = 512


def load_clip_tokenizer(source: str, *, download: bool = True) -> Any | None:
    """The tokenizer of a hub id or diffusers folder; None when it isn't here (offline, a single file, a typo).

    A hub id is looked up in the local cache first, and fetched (a few small text files, never
    weights) only where the hub is allowed.
    """
    source = source.strip()
    if not source or source.endswith((".safetensors", ".ckpt")):
        return None
    try:
        from transformers import CLIPTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its warnings would land on the wizard's screen
        folder = Path(source).expanduser()
        if folder.is_dir():
            if not (folder / "tokenizer" / "vocab.json").is_file():
                return None
            return _usable(CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer"))
        try:
            cached = _usable(CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=True))
        except OSError:
            cached = None
        if cached is not None or _offline() or not download:
            return cached
        return _usable(CLIPTokenizer.from_pretrained(source, subfolder="tokenizer"))
    except Exception:  # the linter falls back to its syntax checks, whatever went wrong
        log.debug("no tokenizer for %s", source, exc_info=True)
        return None


def _usable(tokenizer: Any) -> Any | None:
    return tokenizer if len(tokenizer) >= MIN_VOCAB else None


def _offline() -> bool:
    return any(
        os.environ.get(name, "").lower() in ("1", "true", "yes") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
