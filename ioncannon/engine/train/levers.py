"""Training's speed levers that are built and tested but stay off for a family until a GPU bench shows they pay.

Each is the family's choice (`Family.train_compile`, `Family.checkpoint_keeps`) unless an environment variable says
otherwise for one run: the bench scripts' plan variants set them, so a lever is measured on the card through the
product's own code before it becomes a family's default.
- What training compiles besides the optimizer: nothing, the denoiser's repeated blocks one by one, or the whole
  denoiser (IONCANNON_TRAIN_COMPILE = none | blocks | model).
- What activation checkpointing keeps: nothing (every checkpointed block is recomputed whole in the backward), or
  the attention kernels' outputs (IONCANNON_CHECKPOINT_KEEPS = none | attention): a few hundred bytes a token per
  block, and the recompute skips the one op that costs most per byte kept.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch

TRAIN_COMPILE_SCOPES = ("", "blocks", "model")
CHECKPOINT_KEEPS = ("", "attention")

# the fused attention kernels' ops (whichever backend SDPA picked); the math backend's many small ops are not kept
_ATTENTION_OPS = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                  "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")


def _choice(variable: str, family_value: str, allowed: tuple[str, ...], what: str) -> str:
    forced = os.environ.get(variable, "")
    if forced == "none" or forced in allowed[1:]:
        return "" if forced == "none" else forced
    if family_value not in allowed:
        raise ValueError(f"unknown {what} {family_value!r}; use one of {', '.join(map(repr, allowed))}")
    return family_value


def training_compile(family: Any) -> str:
    """"" (the optimizer alone), "blocks" or "model": the family's `train_compile` unless IONCANNON_TRAIN_COMPILE
    says otherwise."""
    return _choice("IONCANNON_TRAIN_COMPILE", str(family.train_compile), TRAIN_COMPILE_SCOPES,
                   "training compile scope")


def checkpoint_keeps(family: Any) -> str:
    """"" (recompute everything) or "attention": the family's `checkpoint_keeps` unless IONCANNON_CHECKPOINT_KEEPS
    says otherwise."""
    return _choice("IONCANNON_CHECKPOINT_KEEPS", str(family.checkpoint_keeps), CHECKPOINT_KEEPS,
                   "checkpoint policy")


def checkpoint_function(keeps: str) -> Callable[..., Any]:
    """The function a diffusers model's `enable_gradient_checkpointing` runs each block through.

    Non-reentrant, without RNG bookkeeping (the denoisers have no dropout, so skipping it is exact and keeps the step
    CUDA-graph capturable); with `keeps` "attention", a selective checkpoint whose recompute takes the attention
    outputs from the forward instead of running the kernel again (same numbers: tests/engine/test_train_levers.py).
    """
    from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

    if not keeps:
        return functools.partial(checkpoint, use_reentrant=False, preserve_rng_state=False)
    if keeps != "attention":
        raise ValueError(f"unknown checkpoint policy {keeps!r}")
    return functools.partial(checkpoint, use_reentrant=False, preserve_rng_state=False,
                             context_fn=functools.partial(create_selective_checkpoint_contexts, _keep_attention))


def attention_ops() -> set[Any]:
    """The attention kernels' aten ops this torch build has."""
    return {getattr(torch.ops.aten, name).default for name in _ATTENTION_OPS if hasattr(torch.ops.aten, name)}


def _keep_attention(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in _KEPT else CheckpointPolicy.PREFER_RECOMPUTE


_KEPT = attention_ops()
