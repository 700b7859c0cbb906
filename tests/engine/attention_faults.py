"""Attention trial functions with a planted fault, run by the kernel test in its own child processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

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


def replays_the_first_gradient_layout(backend: str, shapes: Sequence[AttentionShape], dtype: torch.dtype,
                                      device: torch.device, backward: bool) -> Trial:
    """The flash kernel's backward keeps one plan per shape and replays it on a gradient laid out differently: it
    reads the output's gradient with the strides of the first one it saw. Read through a narrower layout than the
    real one, the numbers are wrong but finite; through a wider one, it reads past the tensor and crashes. That is
    how cuDNN's cached backward plans seem to have broken FLUX.1 (double and single blocks send the gradient with
    different row strides), while each layout tested on its own passed."""
    if backend != "flash":
        return sdpa_trial(backend, shapes, dtype, device, backward)
    plans: dict[tuple[int, ...], tuple[int, ...]] = {}

    def replay(grad: torch.Tensor) -> torch.Tensor:
        strides = plans.setdefault(tuple(grad.shape), grad.stride())
        if grad.stride() == strides:
            return grad
        reach = grad.storage_offset() + sum((n - 1) * st for n, st in zip(grad.shape, strides, strict=True)) + 1
        if reach > grad.untyped_storage().nbytes() // grad.element_size():
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return grad.as_strided(grad.shape, strides)

    with flash_backward(grad_in=replay):
        return sdpa_trial(backend, shapes, dtype, device, backward)


@contextlib.contextmanager
def flash_backward(grad_in: Callable[[torch.Tensor], torch.Tensor] = lambda g: g,
                   grads_out: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] = lambda gs: gs,
                   ) -> Iterator[None]:
    """Under the flash switch, attention's backward sees the output's gradient through `grad_in` and hands back
    `grads_out` of the true gradients of q, k and v; the math reference the trial compares with stays right."""
    real = torch.nn.functional.scaled_dot_product_attention

    class Faulty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(q, k, v)
            return real(q, k, v)

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            with torch.enable_grad():
                again = [t.detach().requires_grad_(True) for t in ctx.saved_tensors]
                return grads_out(torch.autograd.grad(real(*again), again, grad_in(grad)))

    def faulty(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: object) -> torch.Tensor:
        if q.requires_grad and torch.backends.cuda.flash_sdp_enabled():
            return Faulty.apply(q, k, v)
        return real(q, k, v, **kw)

    torch.nn.functional.scaled_dot_product_attention = faulty
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
