"""Flux LoRA exports read back: diffusers' load_lora_weights, the original layout ComfyUI applies, the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ioncannon.engine.context import StageContext
from ioncannon.engine.export import export_model, pickle_files
from ioncannon.engine.families import family_for
from ioncannon.engine.families.flux import LORA_TARGETS, TINY_T5_TOKENS
from ioncannon.engine.models.load import Components
from ioncannon.engine.weights.adapters import LoraPair
from ioncannon.engine.weights.flux_keys import kohya_flux_lora, to_original
from ioncannon.job.families import family_info
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import TrainPlan
from ioncannon.job.spec import JobSpec

FLUX = family_for("flux")
PROMPT = "a photo of zwx person"




def lora_trained(model: Path) -> Components:
    """Base weights plus non-zero adapters on every targeted layer; alpha differs from rank, so a lost scale shows."""
    from peft import LoraConfig

    parts = FLUX.load(str(model))
    torch.manual_seed(3)
    parts.unet.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=LORA_TARGETS))
    with torch.no_grad():  # peft's non-default init is small; a visible effect makes the comparisons meaningful
        for name, p in parts.unet.named_parameters():
            if "lora_B" in name:
                p.mul_(4.0)
    return parts


def draw(pipe: Any) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    out = pipe(PROMPT, num_inference_steps=3, generator=torch.Generator().manual_seed(0), height=64, width=64,
               max_sequence_length=TINY_T5_TOKENS, output_type="np")
    return out.images


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_flux: Path) -> tuple[StageContext, Any]:
    root = tmp_path_factory.mktemp("flux-lora")
    spec = JobSpec(name="x", photos_dir=str(root), identifier="zwx", class_name="person", base_model=str(tiny_flux),
                   family="flux", resolution=64, device="cpu",
                   train=TrainPlan(mode="lora", steps=50, prior_preservation=False),
                   generate=family_info("flux").generate)
    paths = JobPaths(root / "job")
    paths.ensure()
    ctx = StageContext(spec=spec, paths=paths, workdir=root, emit=lambda e: None, should_stop=lambda: False)
    return ctx, export_model(ctx, lambda: lora_trained(tiny_flux))


@pytest.fixture(scope="module")
def images(tiny_flux: Path) -> dict[str, np.ndarray]:
    return {"trained": draw(FLUX.pipeline(lora_trained(tiny_flux))),
            "base": draw(FLUX.pipeline(FLUX.load(str(tiny_flux))))}


def test_only_the_lora_files_and_the_card_are_written(exported: tuple[StageContext, Any]) -> None:
    ctx, targets = exported
    written = sorted(p.name for p in ctx.paths.trained_models.iterdir())
    assert written == sorted([targets.lora_kohya.name, targets.lora_diffusers.name, targets.model_card.name])
    assert pickle_files(ctx.paths.root) == []


def test_kohya_file_has_the_original_flux_layout(exported: tuple[StageContext, Any]) -> None:
    _, targets = exported
    with safe_open(str(targets.lora_kohya), "pt") as fh:  # type: ignore[attr-defined]
        keys = set(fh.keys())
        qkv_down = fh.get_tensor("lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight")
        qkv_up = fh.get_tensor("lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight")
        qkv_alpha = fh.get_tensor("lora_unet_double_blocks_0_img_attn_qkv.alpha")
        linear1_up = fh.get_tensor("lora_unet_single_blocks_1_linear1.lora_up.weight")
        proj_alpha = fh.get_tensor("lora_unet_double_blocks_1_txt_attn_proj.alpha")
        architecture = fh.metadata()["modelspec.architecture"]
    inner = 32
    # q, k and v are one fused layer: stacked downs, a block-diagonal up, alpha x 3 so alpha / rank is unchanged
    assert qkv_down.shape == (12, inner) and qkv_up.shape == (3 * inner, 12) and float(qkv_alpha) == 24.0
    assert not qkv_up[:inner, 4:].any() and not qkv_up[inner:2 * inner, :4].any()
    assert linear1_up.shape == (3 * inner + 4 * inner, 16)  # q, k, v and the MLP input
    assert float(proj_alpha) == 8.0
    for block in ("single_blocks_0_linear2", "double_blocks_1_img_mlp_0", "double_blocks_1_txt_mlp_2"):
        assert f"lora_unet_{block}.lora_down.weight" in keys
    assert not any("transformer_blocks" in k for k in keys)
    assert architecture == "flux-1-dev/lora"


def test_diffusers_lora_folder_draws_what_the_trained_adapters_draw(
    exported: tuple[StageContext, Any], images: dict[str, np.ndarray], tiny_flux: Path
) -> None:
    _, targets = exported
    pipe = FLUX.pipeline(FLUX.load(str(tiny_flux)))
    pipe.load_lora_weights(str(targets.lora_diffusers))
    effect = np.abs(images["trained"] - images["base"]).max()
    assert effect > 0.05, "the adapters must change the picture for this test to mean anything"
    assert np.abs(draw(pipe) - images["trained"]).max() < effect / 50


def test_kohya_file_applied_to_original_weights_as_comfyui_does_draws_the_trained_picture(
    exported: tuple[StageContext, Any], images: dict[str, np.ndarray], tiny_flux: Path, tmp_path: Path
) -> None:
    """W += alpha / rank x up @ down on each original-layout weight, then the file loads as a FLUX.1 transformer."""
    _, targets = exported
    weights = to_original(FLUX.load(str(tiny_flux)).unet.state_dict())
    lora = load_file(str(targets.lora_kohya))
    applied = 0
    for key in [k for k in lora if k.endswith(".lora_down.weight")]:
        base = key.removesuffix(".lora_down.weight")
        down, up = lora[key].float(), lora[f"{base}.lora_up.weight"].float()
        scale = float(lora[f"{base}.alpha"]) / down.shape[0]
        name = next(n for n in weights if n.endswith(".weight") and "lora_unet_" + n[:-7].replace(".", "_") == base)
        weights[name] = weights[name] + scale * up @ down
        applied += 1
    assert applied == 2 * 8 + 2 * 2  # double blocks: 8 of 10 layers (not the modulations); single: linear1, linear2
    single = tmp_path / "merged-flux-transformer.safetensors"
    save_file(weights, str(single))
    merged = FLUX.load(str(single), single_file_config=str(tiny_flux))
    effect = np.abs(images["trained"] - images["base"]).max()
    # the LoRA file is bf16: its rounding shows, far below the adapters' effect
    assert np.abs(draw(FLUX.pipeline(merged)) - images["trained"]).max() < effect / 10


def test_diffusers_reads_our_kohya_layout_at_flux_dev_shapes() -> None:
    """diffusers' kohya converter hard-codes FLUX.1-dev's widths, so it is checked at real shapes (LoRA only)."""
    import re

    from diffusers import FluxPipeline, FluxTransformer2DModel

    from ioncannon.engine.families.flux import transformer_config

    with torch.device("meta"):
        model = FluxTransformer2DModel(**transformer_config("real"))
    g = torch.Generator().manual_seed(0)
    pairs = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and re.fullmatch(LORA_TARGETS, name):
            down = torch.randn(2, module.in_features, generator=g)
            pairs.append(LoraPair(name, down, torch.randn(module.out_features, 2, generator=g), alpha=3.0))
    assert len(pairs) == 19 * 12 + 38 * 5
    read = FluxPipeline.lora_state_dict(kohya_flux_lora(pairs, dtype=torch.float32))
    state = read[0] if isinstance(read, tuple) else read
    for pair in pairs[::7]:
        a, b = state[f"transformer.{pair.module}.lora_A.weight"], state[f"transformer.{pair.module}.lora_B.weight"]
        x = torch.randn(pair.down.shape[1], generator=g)
        want = 1.5 * pair.up @ (pair.down @ x)
        assert torch.allclose(b @ (a @ x), want, rtol=1e-4, atol=1e-3), pair.module


def test_model_card_says_which_file_goes_where(exported: tuple[StageContext, Any]) -> None:
    _, targets = exported
    card = targets.model_card.read_text(encoding="utf-8")
    assert "zwx person" in card and "ComfyUI" in card and "load_lora_weights" in card
    assert "about 28 steps and guidance 3.5" in card
    assert "Non-Commercial" in card and "_model.safetensors" not in card


def test_the_exports_skeleton_has_the_models_shape_and_no_weights(tiny_flux: Path, tmp_path: Path) -> None:
    """The LoRA export's transformer is read from the model's config alone: the model's modules on the meta device;
    a base model that is not there fails in one sentence."""
    from ioncannon.engine.models.load import ModelLoadError

    skeleton, real = FLUX.denoiser_skeleton(str(tiny_flux)), FLUX.load(str(tiny_flux)).unet
    assert all(p.is_meta for p in skeleton.parameters())
    assert {n: p.shape for n, p in skeleton.named_parameters()} == {n: p.shape for n, p in real.named_parameters()}
    with pytest.raises(ModelLoadError, match="does not exist"):
        FLUX.denoiser_skeleton(str(tmp_path / "gone"))
