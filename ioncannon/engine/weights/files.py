"""Weights on disk: every safetensors file the engine writes goes through here, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from ioncannon.job.fsio import fsync_dir


def save_tensors(path: str | Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (temp name, fsync, rename): a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
