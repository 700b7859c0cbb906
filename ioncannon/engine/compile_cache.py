"""The work dir's torch.compile and Triton kernel cache: every job, stage and process on the box reuses it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def compile_root(shared_cache: Path) -> Path:
    """Where a work dir keeps compiled kernels (next to its class images and tiny models)."""
    return shared_cache / "compile"


def use_compile_cache(root: Path) -> Path:
    """Point inductor's and Triton's caches into `root` for this process and the ones it starts.

    Set before the first compile; a cache the user chose through the environment is kept. A second job on the
    same box (or a resumed one) then loads kernels instead of building them: minutes turn into seconds.
    """
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return root


def warm_marker(root: Path, what: dict[str, Any]) -> Path:
    """A file whose existence says kernels for `what` (model shape, batch, dtype, GPU, torch) are in the cache."""
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return root / f"warm-{digest}"
