"""Frozen base weights stored in fp8 for LoRA runs on small cards (torchao's weight-only float8)."""

from __future__ import annotations

from typing import Any

import torch

INSTALL_HINT = "pip install 'ioncannon[flux]' (torchao)"


def quantise_linear_layers(model: Any, inside: str) -> int:
    """Store every nn.Linear whose name contains `inside` as fp8 e4m3 with per-row scales; how many were changed.

    Weight-only: the layer computes in the activations' dtype (bf16) from weights dequantised on the fly, so
    gradients reach the inputs (and the LoRA adapters added after this) exactly as before, at half the memory
    of bf16 weights. Chosen over NF4 because the dequantisation is a cast and a multiply (no lookup kernel), it
    runs on any device (tests run it on the CPU) and keeps more precision (8 bits against 4).
    """
    try:
        from torchao.quantization import Float8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise RuntimeError(f"The fp8 base-weight plan needs torchao: {INSTALL_HINT}, or pick a bf16 plan.") from exc
    names = {id(m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and inside in n}

    def chosen(module: torch.nn.Module, name: str) -> bool:
        return id(module) in names

    quantize_(model, Float8WeightOnlyConfig(), filter_fn=chosen)
    return len(names)
