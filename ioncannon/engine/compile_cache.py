"""torch.compile in the engine: the work dir's kernel cache (every job, stage and process on the box reuses it) and
regional compilation (a model's repeated blocks compiled one by one)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch


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


# Regional compilation: the denoiser's repeated blocks compiled one by one; blocks of one shape share their kernels,
# so compiling takes a fraction of the whole model's time. The blocks are those the model declares
# (`_repeated_blocks`: its transformer blocks) and, in a UNet, its resnets, which diffusers leaves out.
EXTRA_REPEATED_BLOCKS = ("ResnetBlock2D",)
BLOCK_SHAPES_LIMIT = 64  # distinct (block, input shape) graphs kept per block type; SD 1.5's UNet has ~20 resnets'


def repeated_blocks(model: torch.nn.Module) -> set[str]:
    """The class names of `model`'s blocks that are compiled one by one."""
    return {*getattr(model, "_repeated_blocks", ()), *EXTRA_REPEATED_BLOCKS}


def compile_blocks(model: torch.nn.Module, backend: str = "inductor") -> int:
    """Compile each repeated block of `model` in place (static shapes); how many were wrapped.

    In training the blocks compile forward and backward, and a block under activation checkpointing runs its
    compiled forward again when the backward recomputes it. (`backend`: tests trace with "aot_eager", which runs
    the captured graphs without generating kernels.)"""
    import torch._dynamo.config as dynamo

    dynamo.recompile_limit = max(dynamo.recompile_limit, BLOCK_SHAPES_LIMIT)
    names = repeated_blocks(model)
    count = 0
    for module in model.modules():
        if type(module).__name__ in names:
            module.compile(dynamic=False, fullgraph=False, backend=backend)
            count += 1
    return count


def uncompile_blocks(model: torch.nn.Module) -> None:
    """Undo `compile_blocks`: every block runs eagerly again."""
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
