"""Frozen base weights stored in fp8 for LoRA runs on small cards (torchao's weight-only float8)."""

from __future__ import annotations

from typing import Any

import torch

INSTALL_HINT = "pip install 'ioncannon[flux]' (torchao)"


def quantise_linear_layers(model: Any, inside: tuple[str, ...], device: torch.device, dtype: torch.dtype) -> int:
    """Put `model` on `device`: the children named in `inside` one at a time, each block's nn.Linear layers stored
    as fp8 e4m3 with per-row scales as it arrives; everything else in `dtype`. Returns how many layers changed.

    One block at a time, so the card never holds the bf16 weights whole (a 24 GB card cannot). Weight-only: a
    layer computes in the activations' dtype from weights dequantised on the fly, so gradients reach the inputs
    (and the LoRA adapters added after this) as before, at half the memory of bf16 weights. Chosen over NF4: the
    dequantisation is a cast and a multiply (no lookup kernel), it runs on any device (tests run it on the CPU)
    and it keeps more precision (8 bits against 4).
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
            quantize_(block, Float8WeightOnlyConfig(), filter_fn=lambda m, _: isinstance(m, torch.nn.Linear))
            changed += sum(1 for m in block.modules() if isinstance(m, torch.nn.Linear))
    for param in model.parameters(recurse=False):
        param.data = param.data.to(device=device, dtype=dtype)
    return changed
