"""Frozen base weights stored in fp8 for LoRA runs on small cards (torchao's float8 storage, our own matmul)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

INSTALL_HINT = "pip install 'ioncannon[flux]' (torchao)"


def quantise_linear_layers(model: Any, inside: tuple[str, ...], device: torch.device, dtype: torch.dtype) -> int:
    """Put `model` on `device`: the children named in `inside` one at a time, each block's nn.Linear layers stored
    as fp8 e4m3 with per-row scales as it arrives; everything else in `dtype`. Returns how many layers changed.

    One block at a time, so the card never holds the bf16 weights whole (a 24 GB card cannot). Weight-only: a
    layer computes in the activations' dtype from weights dequantised on the fly, so gradients reach the inputs
    (and the LoRA adapters added after this) as before, at half the memory of bf16 weights. Chosen over NF4: the
    dequantisation is a cast and a multiply (no lookup kernel), it runs on any device (tests run it on the CPU)
    and it keeps more precision (8 bits against 4). torchao quantises and stores; each layer becomes an
    `Fp8Linear`, which runs the matmul itself (see there).
    """
    try:
        from torchao.quantization import Float8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise RuntimeError(f"The fp8 base-weight plan needs torchao: {INSTALL_HINT}, or pick a bf16 plan.") from exc
    changed = 0
    gemm = fp8_gemm_wanted(device)
    for name, child in model.named_children():
        if name not in inside:
            child.to(device=device, dtype=dtype)
            continue
        for block in child:
            block.to(device=device, dtype=dtype)
            quantize_(block, Float8WeightOnlyConfig(), filter_fn=lambda m, _: type(m) is torch.nn.Linear)
            for module in block.modules():
                if type(module) is torch.nn.Linear:
                    module.__class__ = Fp8Linear
                    module.fp8_gemm = gemm
                    changed += 1
    for param in model.parameters(recurse=False):
        param.data = param.data.to(device=device, dtype=dtype)
    return changed


E4M3_MAX = torch.finfo(torch.float8_e4m3fn).max   # 448
# Off until bench/flux_speed.py's "+fp8-gemm" rows show float8 GEMMs faster on the card than dequantising to bf16
# (the numbers agree to a few percent: tests/engine/test_quantise.py).
FP8_GEMM_DEFAULT = False
FP8_GEMM_MIN_ROWS = 256   # fewer rows (the modulation layers' one per image) are not worth quantising on the fly


class Fp8Linear(torch.nn.Linear):
    """An nn.Linear whose frozen weight is torchao's Float8Tensor (e4m3 `qdata`, float32 per-row `scale`).

    torchao's own weight-only matmul dequantises through float32 in three passes (about 19 bytes moved per weight)
    and goes through tensor-subclass dispatch on every call; on FLUX.1 at 1024 px that cost a third of a training
    step. Here the weight is dequantised straight to the activations' dtype by one fused kernel on the GPU (3 bytes
    a weight: read one, write two) and autograd keeps nothing for the backward but the stored weight itself, which
    is dequantised again there. Still an nn.Linear, so LoRA adapters wrap it as any other.

    With `fp8_gemm` on (each layer as `quantise_linear_layers` made it: `fp8_gemm_wanted`), layers with many rows
    instead multiply in fp8 on the tensor cores (`_Fp8Gemm`): twice bf16's peak on Hopper, at the cost of rounding
    the activations and the gradients to 8 bits per row.
    """

    fp8_gemm = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if not hasattr(weight, "qdata"):  # not (or no longer) quantised
            return super().forward(x)
        if weight.requires_grad:
            raise RuntimeError("fp8-stored base weights are frozen; train adapters on them, not the weights")
        if self.fp8_gemm and x.numel() >= FP8_GEMM_MIN_ROWS * x.shape[-1]:
            return _Fp8Gemm.apply(x, weight.qdata, weight.scale, self.bias)
        return _Fp8Matmul.apply(x, weight.qdata, weight.scale, self.bias)


def fp8_gemm_supported(device: torch.device) -> bool:
    """Whether `device` multiplies float8 matrices with per-row scales: Hopper (and Ada) cards; the CPU too, slowly
    (tests check the numbers there)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 9)
    return device.type == "cpu"


def fp8_gemm_wanted(device: torch.device) -> bool:
    """Whether layers stored in fp8 on `device` multiply in float8: IONCANNON_FP8_GEMM=on|off for one run, else
    FP8_GEMM_DEFAULT; never where the card has no float8 tensor cores."""
    forced = os.environ.get("IONCANNON_FP8_GEMM", "")
    wanted = forced == "on" if forced in ("on", "off") else FP8_GEMM_DEFAULT
    return wanted and fp8_gemm_supported(device)


def dequantise(qdata: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`qdata * scale` in `dtype`, the product taken in float32 (torchao's numbers) in one kernel on a GPU."""
    if qdata.is_cuda:
        return _compiled(_dequantise, fullgraph=True)(qdata, scale, dtype)
    return _dequantise(qdata, scale, dtype)


def _dequantise(qdata: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (qdata.to(torch.float32) * scale).to(dtype)


_COMPILED: dict[Any, Any] = {}


def _compiled(fn: Any, fullgraph: bool = False) -> Any:
    """`fn` compiled into one GPU kernel, built once: shapes are dynamic, so FLUX's seven weight shapes (and every
    activation shape) share it."""
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True, fullgraph=fullgraph)
    return _COMPILED[fn]


class _Fp8Matmul(torch.autograd.Function):
    """y = x W^T + b with W dequantised per call; the backward gives x's gradient only (W and b are frozen)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, qdata: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(qdata, scale)  # the stored weights themselves: no activation memory
        return F.linear(x, dequantise(qdata, scale, x.dtype), bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, torch.Tensor | None]:
        qdata, scale = ctx.saved_tensors
        grad_x = grad.matmul(dequantise(qdata, scale, grad.dtype)) if ctx.needs_input_grad[0] else None
        grad_b = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.needs_input_grad[3] else None
        return grad_x, None, None, grad_b


def _quantise_rows(rows: torch.Tensor, column_scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, C) -> e4m3 values and float32 (R, 1) scales, each row scaled by its absolute max; `column_scale` (1, C)
    multiplies the columns first (in float32)."""
    rows = rows.to(torch.float32)
    if column_scale is not None:
        rows = rows * column_scale
    scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / E4M3_MAX
    return (rows / scale).to(torch.float8_e4m3fn), scale


def quantise_rows(rows: torch.Tensor, column_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`_quantise_rows`, compiled into one kernel on a GPU."""
    if rows.is_cuda:
        return _compiled(_quantise_rows)(rows, column_scale)
    return _quantise_rows(rows, column_scale)


class _Fp8Gemm(torch.autograd.Function):
    """y = x W^T + b as float8 GEMMs with per-row scales (`torch._scaled_mm`), forward and backward.

    Forward: x quantised per row, W as stored (e4m3 with per-output-row scales). Backward, x's gradient only:
    dx = (dy * s) Q, the weight's row scales s folded into dy's columns before dy is quantised per row, so the
    stored Q serves unscaled (its transposed copy, which the kernel's layout wants, lives for the call alone).
    Nothing of x is kept for the backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, qdata: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(qdata, scale)
        xq, xs = quantise_rows(x.reshape(-1, x.shape[-1]))
        y = torch._scaled_mm(xq, qdata.t(), scale_a=xs, scale_b=scale.reshape(1, -1).to(torch.float32),
                             out_dtype=x.dtype)
        if bias is not None:
            y = y + bias
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, torch.Tensor | None]:
        qdata, scale = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])
        grad_x = None
        if ctx.needs_input_grad[0]:
            gq, gs = quantise_rows(rows, scale.reshape(1, -1).to(torch.float32))
            ones = torch.ones(1, qdata.shape[1], device=grad.device, dtype=torch.float32)
            grad_x = torch._scaled_mm(gq, qdata.t().contiguous().t(), scale_a=gs, scale_b=ones, out_dtype=grad.dtype)
            grad_x = grad_x.view(*grad.shape[:-1], qdata.shape[1])
        grad_b = rows.sum(0) if ctx.needs_input_grad[3] else None
        return grad_x, None, None, grad_b
