"""Attention trial functions with a planted fault, run by the kernel test in its own child processes."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ioncannon.engine.attention import AttentionShape, Trial, sdpa_trial


def crash_on_flash(backend: str, shapes: Sequence[AttentionShape], dtype: torch.dtype, device: torch.device,
                   backward: bool) -> Trial:
    """The flash kernel takes the whole process down, as an illegal memory access does on a GPU."""
    if backend == "flash":
        os.abort()
    return sdpa_trial(backend, shapes, dtype, device, backward)


def raise_on_flash(backend: str, shapes: Sequence[AttentionShape], dtype: torch.dtype, device: torch.device,
                   backward: bool) -> Trial:
    """The flash kernel raises the error cuDNN's attention raised on Flux at 1024 px."""
    if backend == "flash":
        raise RuntimeError("Expected mha_graph.execute(handle, variant_pack, workspace_ptr.get()).is_good()")
    return sdpa_trial(backend, shapes, dtype, device, backward)


def wrong_on_flash(backend: str, shapes: Sequence[AttentionShape], dtype: torch.dtype, device: torch.device,
                   backward: bool) -> Trial:
    """The flash kernel 'works' but its numbers are off: the real check against the math kernel must catch it."""
    if backend != "flash":
        return sdpa_trial(backend, shapes, dtype, device, backward)
    real = torch.nn.functional.scaled_dot_product_attention

    def off(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> torch.Tensor:
        out = real(q, k, v, **kw)
        # only under the flash switch: the math reference the trial compares with stays right
        return out * 1.5 if torch.backends.cuda.flash_sdp_enabled() else out

    torch.nn.functional.scaled_dot_product_attention = off
    try:
        return sdpa_trial(backend, shapes, dtype, device, backward)
    finally:
        torch.nn.functional.scaled_dot_product_attention = real


def never(*_args: object) -> Trial:
    raise AssertionError("a cached choice must not be tested again")


def breaks_on_a_strided_gradient(backend: str, shapes: Sequence[AttentionShape], dtype: torch.dtype,
                                 device: torch.device, backward: bool) -> Trial:
    """The flash kernel's backward breaks when the output's gradient is laid out unlike the output, as cuDNN's did
    under Flux's single blocks (attention output concatenated beside the MLP's) while contiguous tests passed."""
    if backend != "flash":
        return sdpa_trial(backend, shapes, dtype, device, backward)
    real = torch.nn.functional.scaled_dot_product_attention

    def strict(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> torch.Tensor:
        out = real(q, k, v, **kw)
        if out.requires_grad and torch.backends.cuda.flash_sdp_enabled():
            def check(grad: torch.Tensor) -> None:
                if grad.stride() != out.stride():
                    raise RuntimeError("CUDA error: an illegal memory access was encountered")
            out.register_hook(check)
        return out

    torch.nn.functional.scaled_dot_product_attention = strict
    try:
        return sdpa_trial(backend, shapes, dtype, device, backward)
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
