"""The base model's CLIP tokenizer for the identifier linter, when it can be had without a fuss (call off the UI)."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("ioncannon.tui")

# CLIP's byte-level BPE has 512 base symbols before any merge: fewer means files were missing and
# the tokenizer was built empty (recent transformers do that instead of raising).
MIN_VOCAB = 512
# How long the hub may take to answer at all before the linter gives up on it: a box without network
# must not leave the person watching "checking…" for minutes.
HUB_PROBE_S = 2.0
DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class TokenizerCheck:
    """The tokenizer, or None and why not (said on the subject screen: the spelling is still checked)."""

    tokenizer: Any | None
    why_not: str = ""


def find_clip_tokenizer(source: str, *, probe_s: float = HUB_PROBE_S) -> TokenizerCheck:
    """The tokenizer of a hub id or diffusers folder: a folder, the local cache, then the hub if it answers quickly.

    Fetching from the hub means a few small text files, never weights.
    """
    source = source.strip()
    if not source:
        return TokenizerCheck(None, "no base model typed yet")
    if source.endswith((".safetensors", ".ckpt")):
        return TokenizerCheck(None, "a single-file model carries no tokenizer files")
    folder = Path(source).expanduser()
    if folder.is_dir() or source.startswith(("/", "./", "../", "~")):
        found = load_clip_tokenizer(source, download=False)
        return TokenizerCheck(found, "" if found is not None else f"{source} has no tokenizer/ folder")
    found = load_clip_tokenizer(source, download=False)
    if found is not None:
        return TokenizerCheck(found)
    if offline():
        return TokenizerCheck(None, "offline (HF_HUB_OFFLINE is set)")
    if not hub_answers(probe_s):
        return TokenizerCheck(None, f"the model hub did not answer within {probe_s:g} s (no network?)")
    found = load_clip_tokenizer(source)
    return TokenizerCheck(found, "" if found is not None else f"{source}'s tokenizer could not be fetched")


def load_clip_tokenizer(source: str, *, download: bool = True) -> Any | None:
    """The tokenizer of a hub id or diffusers folder; None when it isn't here (offline, a single file, a typo)."""
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
        if cached is not None or offline() or not download:
            return cached
        return _usable(CLIPTokenizer.from_pretrained(source, subfolder="tokenizer"))
    except Exception:  # the linter falls back to its syntax checks, whatever went wrong
        log.debug("no tokenizer for %s", source, exc_info=True)
        return None


def hub_answers(timeout_s: float = HUB_PROBE_S) -> bool:
    """Whether the model hub answers an HTTP request within `timeout_s` (any status counts as an answer)."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    request = urllib.request.Request(endpoint.rstrip("/") + "/", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):  # noqa: S310 - the hub's own address
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if only to refuse
    except (urllib.error.URLError, OSError, ValueError):  # a refused or silent connection, a bad address
        return False


def _usable(tokenizer: Any) -> Any | None:
    return tokenizer if len(tokenizer) >= MIN_VOCAB else None


def offline() -> bool:
    return any(
        os.environ.get(name, "").lower() in ("1", "true", "yes") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
