"""The kernel trial hands attention its tensors in every layout the real models do (cuDNN broke on one it missed).

On torch 2.11 cuDNN's attention passed a test with plain q/k/v and crashed inside Flux, whose single blocks send
the output's gradient as a slice of a wider one. These tests run each family's tiny model (the same diffusers code
as the real one), record the strides of every attention call's inputs and of the gradient it gets back, and check
that the trial produces each of those layouts too. A diffusers release that lays attention out anew fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from ioncannon.engine import attention
from ioncannon.engine.families import family_for
from ioncannon.engine.models.load import TINY_RESOLUTION
from tests.engine.conftest import load_sd15

CPU = torch.device("cpu")


def layout(t: torch.Tensor) -> str:
    """A (batch, heads, tokens, head size) tensor's memory layout, in words that do not depend on its size."""
    _, h, s, d = t.shape
    st = t.stride()
    if st[3] != 1:
        return f"strided head size ({st[3]})"
    if st[1] == d and st[2] % (h * d) == 0:
        return f"tokens outer, rows of {st[2] // (h * d)}x the heads"
    if st[2] == d and st[1] % (s * d) == 0:
        return f"heads outer, blocks of {st[1] // (s * d)}x"
    return f"other {tuple(st)}"


@contextmanager
def recording(only_with_grad: bool = False) -> Iterator[set[tuple[str, str]]]:
    """Every SDPA call's q, k, v layouts ('in') and, where the output gets a gradient, that gradient's ('grad')."""
    seen: set[tuple[str, str]] = set()
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(*args: Any, **kw: Any) -> torch.Tensor:
        out = real(*args, **kw)
        q, k, v = (list(args) + [kw.get(n) for n in ("query", "key", "value")][len(args):])[:3]
        if only_with_grad and not torch.is_grad_enabled():
            return out   # the trial's own math reference, not a trial
        seen.update(("in", layout(x)) for x in (q, k, v))
        if out.requires_grad:
            out.register_hook(lambda g: seen.add(("grad", layout(g))))
        return out

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        yield seen
    finally:
        torch.nn.functional.scaled_dot_product_attention = real


def trial_layouts(shapes: list[attention.AttentionShape], backward: bool) -> set[tuple[str, str]]:
    with recording(only_with_grad=True) as seen:
        assert attention.sdpa_trial("math", shapes, torch.float32, CPU, backward).ok
    return seen


def model_layouts(run: Callable[[], None]) -> set[tuple[str, str]]:
    with recording() as seen:
        run()
    return seen


def _train_and_sample(denoise: Callable[[bool], torch.Tensor], model: Any) -> tuple[Callable[[], None],
                                                                                   Callable[[], None]]:
    """Training: a forward and a backward with the input needing a gradient (the adapters' gradients flow the same
    way). Sampling: the sampler's setting on a GPU, q/k/v projections fused, no gradient."""
    def train() -> None:
        denoise(True).float().square().mean().backward()

    def sample() -> None:
        model.fuse_qkv_projections()
        with torch.inference_mode():
            denoise(False)

    return train, sample


def check(family: str, parts: Any, denoise: Callable[[bool], torch.Tensor]) -> None:
    shapes = family_for(family).attention_shapes(parts, TINY_RESOLUTION)
    train, sample = _train_and_sample(denoise, parts.unet)
    trained, sampled = model_layouts(train), model_layouts(sample)
    assert any(kind == "grad" for kind, _ in trained), "the model's attention got a gradient"
    assert trained <= trial_layouts(shapes, backward=True), "training uses a layout the kernel trial never tries"
    assert sampled <= trial_layouts(shapes, backward=False), "sampling uses a layout the kernel trial never tries"


def test_flux_layouts_are_all_tried(tiny_flux: Path) -> None:
    flux = family_for("flux")
    parts = flux.load(str(tiny_flux), torch.float32)
    cfg = parts.unet.config
    tokens = int(parts.tokenizer_2.model_max_length)
    cond = {"hidden": torch.randn(1, tokens, cfg.joint_attention_dim),
            "pooled": torch.randn(1, cfg.pooled_projection_dim)}
    side = TINY_RESOLUTION // 8

    def denoise(grad: bool) -> torch.Tensor:
        x = torch.randn(1, 16, side, side, requires_grad=grad)
        return flux.predict(parts.unet, x, torch.full((1,), 500.0), cond)

    check("flux", parts, denoise)
    flux_grads = {name for kind, name in model_layouts(_train_and_sample(denoise, parts.unet)[0]) if kind == "grad"}
    assert "tokens outer, rows of 5x the heads" in flux_grads, "Flux's single blocks: attention beside a 4x MLP"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_unet_layouts_are_all_tried(family: str, tiny_model: Path, tiny_sdxl: Path) -> None:
    fam = family_for(family)
    parts = load_sd15(str(tiny_model)) if family == "sd15" else fam.load(str(tiny_sdxl), torch.float32)
    with torch.no_grad():
        cond = fam.encode_prompts(parts, ["a photo of sks dog"], TINY_RESOLUTION, CPU)
    side = TINY_RESOLUTION // 8
    channels = parts.unet.config.in_channels

    def denoise(grad: bool) -> torch.Tensor:
        x = torch.randn(1, channels, side, side, requires_grad=grad)
        return fam.predict(parts.unet, x, torch.full((1,), 500), cond)

    check(family, parts, denoise)
