"""Gated Hugging Face models: is a login token on this machine, and what to say before anything downloads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Hub ids whose weights are only served to logged-in users who accepted the licence on the model's page.
GATED_MODELS: frozenset[str] = frozenset({"black-forest-labs/FLUX.1-dev"})


def token_file(env: Mapping[str, str] | None = None) -> Path:
    """Where `hf auth login` keeps the token (HF_TOKEN_PATH, else HF_HOME/token, else the user cache)."""
    env = os.environ if env is None else env
    if env.get("HF_TOKEN_PATH"):
        return Path(env["HF_TOKEN_PATH"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "token"
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache / "huggingface" / "token"


def has_token(env: Mapping[str, str] | None = None) -> bool:
    """True when a Hugging Face token is set in the environment or saved by a login."""
    env = os.environ if env is None else env
    if any(env.get(name, "").strip() for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")):
        return True
    try:
        return bool(token_file(env).read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return False


def is_gated(source: str) -> bool:
    return source.strip() in GATED_MODELS


def login_problem(source: str, env: Mapping[str, str] | None = None) -> str | None:
    """One sentence on how to log in when `source` is a gated hub model and no token is here; None otherwise."""
    if not is_gated(source) or has_token(env):
        return None
    source = source.strip()
    return (f"{source} is gated on the Hugging Face Hub: accept its licence at https://huggingface.co/{source}, then "
            "run `hf auth login` on this machine (or export HF_TOKEN=...) and start again.")
