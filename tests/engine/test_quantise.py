"""fp8-stored linear layers: the float8 GEMM path agrees with the dequantising one, forward and backward."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from ioncannon.engine.weights.quantise import (  # noqa: E402
    FP8_GEMM_MIN_ROWS,
    Fp8Linear,
    dequantise,
    fp8_gemm_supported,
    quantise_linear_layers,
)


def fp8_layer(inputs: int, outputs: int) -> Fp8Linear:
    torch.manual_seed(0)
    block = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(inputs, outputs))])
    model = torch.nn.Module()
    model.blocks = block
    assert quantise_linear_layers(model, ("blocks",), torch.device("cpu"), torch.bfloat16) == 1
    layer = block[0][0]
    assert isinstance(layer, Fp8Linear)
    return layer


def forward_backward(layer: Fp8Linear, x: torch.Tensor, grad: torch.Tensor, fp8_gemm: bool) -> tuple[torch.Tensor, ...]:
    layer.fp8_gemm = fp8_gemm
    layer.bias.requires_grad_(True)
    layer.bias.grad = None
    x = x.detach().requires_grad_(True)
    y = layer(x)
    y.backward(grad)
    assert x.grad is not None and layer.bias.grad is not None
    return y.detach().float(), x.grad.float(), layer.bias.grad.float()


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def test_float8_gemms_match_the_dequantised_layer_forward_and_backward() -> None:
    """Activations and gradients rounded to e4m3 per row: a few percent off the exact product, never more; the
    bias gradient is exact (no rounding on that path)."""
    assert fp8_gemm_supported(torch.device("cpu"))
    layer = fp8_layer(256, 384)
    x = torch.randn(2, FP8_GEMM_MIN_ROWS, 256, dtype=torch.bfloat16)
    grad = torch.randn(2, FP8_GEMM_MIN_ROWS, 384, dtype=torch.bfloat16)
    weight = dequantise(layer.weight.qdata, layer.weight.scale, torch.float32)
    exact_x = x.float().requires_grad_(True)
    exact = exact_x @ weight.t() + layer.bias.float()
    exact.backward(grad.float())
    assert exact_x.grad is not None
    exact = exact.detach()

    y, dx, db = forward_backward(layer, x, grad, fp8_gemm=True)
    y0, dx0, db0 = forward_backward(layer, x, grad, fp8_gemm=False)
    assert y.shape == exact.shape and dx.shape == x.shape
    assert relative(y0, exact) < 0.01 and relative(dx0, exact_x.grad) < 0.01   # bf16 alone
    assert 0.005 < relative(y, exact) < 0.05                                   # e4m3: ~2.5%, and it did run
    assert 0.005 < relative(dx, exact_x.grad) < 0.05
    assert torch.allclose(db, db0)


def test_few_rows_take_the_dequantised_path() -> None:
    """One row per image (Flux's modulation layers): quantising it costs more than it saves, so the result is the
    dequantised layer's, bit for bit."""
    layer = fp8_layer(64, 96)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    grad = torch.randn(3, 96, dtype=torch.bfloat16)
    for want, got in zip(forward_backward(layer, x, grad, False), forward_backward(layer, x, grad, True),
                         strict=True):
        assert torch.equal(want, got)


def test_float8_gemms_are_chosen_as_the_layers_are_stored_and_never_where_the_card_lacks_them(monkeypatch) -> None:
    """Off by default (until a GPU bench shows the gain); IONCANNON_FP8_GEMM=on turns it on for a run, each layer as
    it is quantised; a card without float8 tensor cores (an A100, compute capability 8.0) never gets it."""
    from ioncannon.engine.weights import quantise

    monkeypatch.delenv("IONCANNON_FP8_GEMM", raising=False)
    assert not quantise.FP8_GEMM_DEFAULT and not fp8_layer(64, 32).fp8_gemm
    monkeypatch.setenv("IONCANNON_FP8_GEMM", "on")
    assert fp8_layer(64, 32).fp8_gemm and quantise.fp8_gemm_wanted(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert not quantise.fp8_gemm_wanted(torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert quantise.fp8_gemm_wanted(torch.device("cuda", 0))
    monkeypatch.setenv("IONCANNON_FP8_GEMM", "off")
    assert not quantise.fp8_gemm_wanted(torch.device("cuda", 0)) and not fp8_layer(64, 32).fp8_gemm
