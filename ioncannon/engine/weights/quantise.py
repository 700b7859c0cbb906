"""Frozen base weights stored in fp8 for LoRA runs on small cards (torchao's float8 storage, our own matmul)."""

from __future__ import annotations

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
                    changed += 1
    for param in model.parameters(recurse=False):
        param.data = param.data.to(device=device, dtype=dtype)
    return changed


class Fp8Linear(torch.nn.Linear):
    """An nn.Linear whose frozen weight is torchao's Float8Tensor (e4m3 `qdata`, float32 per-row `scale`).

    torchao's own weight-only matmul dequantises through float32 in three passes (about 19 bytes moved per weight)
    and goes through tensor-subclass dispatch on every call; on FLUX.1 at 1024 px that cost a third of a training
    step. Here the weight is dequantised straight to the activations' dtype by one fused kernel on the GPU (3 bytes
    a weight: read one, write two) and autograd keeps nothing for the backward but the stored weight itself, which
    is dequantised again there. Still an nn.Linear, so LoRA adapters wrap it as any other.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if not hasattr(weight, "qdata"):  # not (or no longer) quantised
            return super().forward(x)
        if weight.requires_grad:
            raise RuntimeError("fp8-stored base weights are frozen; train adapters on them, not the weights")
        return _Fp8Matmul.apply(x, weight.qdata, weight.scale, self.bias)


def dequantise(qdata: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`qdata * scale` in `dtype`, the product taken in float32 (torchao's numbers) in one kernel on a GPU."""
    if qdata.is_cuda:
        return _fused_dequantise()(qdata, scale, dtype)
    return _dequantise(qdata, scale, dtype)


def _dequantise(qdata: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (qdata.to(torch.float32) * scale).to(dtype)


_FUSED: list[Any] = []


def _fused_dequantise() -> Any:
    """The compiled dequantisation, built once: shapes are dynamic, so FLUX's seven weight shapes share one kernel."""
    if not _FUSED:
        _FUSED.append(torch.compile(_dequantise, dynamic=True, fullgraph=True))
    return _FUSED[0]


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
