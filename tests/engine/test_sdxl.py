"""The SDXL family on its tiny model: shapes, conditioning as diffusers computes it, loaders, exports that load back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from ioncannon.engine.context import StageContext
from ioncannon.engine.export import export_model, pickle_files
from ioncannon.engine.families import family_for
from ioncannon.engine.models.load import Components, ModelLoadError, save_tiny_model
from ioncannon.job.families import detect_family
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import TrainPlan
from ioncannon.job.spec import JobSpec

SDXL = family_for("sdxl")
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
PROMPT = "a photo of zwx cat"




def pipeline(parts: Components) -> Any:
    pipe = SDXL.pipeline(parts, sampler=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe: Any) -> np.ndarray:
    out = pipe(PROMPT, num_inference_steps=3, generator=torch.Generator().manual_seed(0), height=64, width=64,
               output_type="np")
    return out.images


def test_tiny_sdxl_has_the_real_structure(tiny_sdxl: Path) -> None:
    parts = SDXL.load(str(tiny_sdxl))
    assert parts.family == "sdxl"
    assert parts.unet.config.addition_embed_type == "text_time"
    assert type(parts.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert parts.vae.config.scaling_factor == pytest.approx(0.13025)
    # the UNet reads both towers side by side, and the pooled embedding plus six size/crop numbers
    widths = parts.text_encoder.config.hidden_size + parts.text_encoder_2.config.hidden_size
    assert parts.unet.config.cross_attention_dim == widths
    time_dim = parts.unet.config.addition_time_embed_dim
    assert (
        parts.unet.config.projection_class_embeddings_input_dim
        == parts.text_encoder_2.config.projection_dim + 6 * time_dim
    )


def test_real_sdxl_shapes_match_the_reference() -> None:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from ioncannon.engine.families.sdxl import text_configs, unet_config

    with torch.device("meta"):  # real sizes without allocating 14 GB
        unet = UNet2DConditionModel(**unet_config("real"))
        one, two = (CLIPTextConfig(**c) for c in text_configs("real", 49408))
        te1, te2 = CLIPTextModel(one), CLIPTextModelWithProjection(two)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 2.55e9 < count(unet) < 2.6e9
    assert 1.2e8 < count(te1) < 1.25e8 and 6.9e8 < count(te2) < 7.0e8


def test_conditioning_is_what_the_diffusers_pipeline_computes(tiny_sdxl: Path) -> None:
    parts = SDXL.load(str(tiny_sdxl))
    cond = SDXL.encode_prompts(parts, [PROMPT, ""], 64, torch.device("cpu"))
    embeds, negative, pooled, negative_pooled = pipeline(parts).encode_prompt(
        PROMPT, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True, negative_prompt=None)
    assert torch.allclose(cond["hidden"][:1], embeds, atol=1e-5)
    assert torch.allclose(cond["pooled"][:1], pooled, atol=1e-5)
    # an empty prompt is zeros, as SDXL base was trained (force_zeros_for_empty_prompt)
    assert torch.equal(cond["hidden"][1:], negative) and torch.equal(cond["pooled"][1:], negative_pooled)
    assert cond["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]] * 2


def test_the_family_is_read_from_the_file_and_a_mismatch_is_one_sentence(tiny_sdxl: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd15_folder = save_tiny_model(tmp_path / "sd15")
    sd15 = family_for("sd15")
    single = tmp_path / "downloaded-model-name-says-nothing.safetensors"
    save_file(SDXL.single_file(SDXL.load(str(tiny_sdxl))), str(single))
    assert detect_family(str(single)) == "sdxl" and detect_family(str(tiny_sdxl)) == "sdxl"
    assert detect_family(str(sd15_folder)) == "sd15"
    with pytest.raises(ModelLoadError) as wrong_file:
        sd15.load(str(single))
    message = str(wrong_file.value)
    assert "is an SDXL model but the job is set to SD 1.5" in message and message.count(". ") == 0
    with pytest.raises(ModelLoadError, match="is an SD 1.5 model but the job is set to SDXL"):
        SDXL.load(str(sd15_folder))


def lora_trained(model: Path) -> Components:
    """Base weights plus non-zero adapters on the UNet and both towers; alphas differ from ranks: a lost scale shows."""
    from peft import LoraConfig, inject_adapter_in_model

    parts = SDXL.load(str(model))
    torch.manual_seed(3)
    parts.unet.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=UNET_TARGETS))
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=2, init_lora_weights=False, target_modules=TEXT_TARGETS),
                            parts.text_encoder)
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=6, init_lora_weights=False, target_modules=TEXT_TARGETS),
                            parts.text_encoder_2)
    return parts


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_sdxl: Path) -> tuple[StageContext, Any]:
    root = tmp_path_factory.mktemp("sdxl-lora")
    spec = JobSpec(name="x", photos_dir=str(root), identifier="zwx", class_name="cat", base_model=str(tiny_sdxl),
                   family="sdxl", resolution=64, device="cpu", train=TrainPlan(mode="lora", steps=50))
    paths = JobPaths(root / "job")
    paths.ensure()
    ctx = StageContext(spec=spec, paths=paths, workdir=root, emit=lambda e: None, should_stop=lambda: False)
    return ctx, export_model(ctx, lambda: lora_trained(tiny_sdxl))


@pytest.fixture(scope="module")
def images(tiny_sdxl: Path) -> dict[str, np.ndarray]:
    return {"trained": draw(pipeline(lora_trained(tiny_sdxl))), "base": draw(pipeline(SDXL.load(str(tiny_sdxl))))}


def test_kohya_file_has_the_sdxl_layout(exported: tuple[StageContext, Any]) -> None:
    _, targets = exported
    with safe_open(str(targets.lora_kohya), "pt") as fh:  # type: ignore[attr-defined]
        keys = set(fh.keys())
        unet_alpha = fh.get_tensor("lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q.alpha")
        te1_alpha = fh.get_tensor("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha")
        te2_alpha = fh.get_tensor("lora_te2_text_model_encoder_layers_1_self_attn_out_proj.alpha")
        architecture = fh.metadata()["modelspec.architecture"]
    # kohya trains SDXL on the original UNet, so its LoRA names are the SGM ones
    assert "lora_unet_middle_block_1_transformer_blocks_1_attn2_to_k.lora_down.weight" in keys
    assert "lora_unet_output_blocks_0_1_transformer_blocks_0_attn2_to_out_0.lora_up.weight" in keys
    assert not any("down_blocks" in k or "up_blocks" in k for k in keys)
    assert (float(unet_alpha), float(te1_alpha), float(te2_alpha)) == (8.0, 2.0, 6.0)
    assert architecture == "stable-diffusion-xl-v1-base/lora"


@pytest.mark.parametrize("which", ["kohya", "diffusers"])
def test_lora_files_draw_what_the_trained_adapters_draw(
    exported: tuple[StageContext, Any], images: dict[str, np.ndarray], tiny_sdxl: Path, which: str
) -> None:
    _, targets = exported
    source = targets.lora_kohya if which == "kohya" else targets.lora_diffusers
    pipe = pipeline(SDXL.load(str(tiny_sdxl)))
    pipe.load_lora_weights(str(source))
    got = draw(pipe)
    effect = np.abs(images["trained"] - images["base"]).max()
    assert effect > 0.05, "the adapters must change the picture for this test to mean anything"
    assert np.abs(got - images["trained"]).max() < effect / 50


def test_single_file_reads_back_through_diffusers_with_every_weight(
    exported: tuple[StageContext, Any], tiny_sdxl: Path
) -> None:
    from diffusers import StableDiffusionXLPipeline

    ctx, targets = exported
    with safe_open(str(targets.single_file), "pt") as fh:  # type: ignore[attr-defined]
        keys = list(fh.keys())
    layout = ("model.diffusion_model.", "first_stage_model.", "conditioner.embedders.0.transformer.",
              "conditioner.embedders.1.model.")
    assert all(k.startswith(layout) for k in keys) and all(any(k.startswith(p) for k in keys) for p in layout)
    back = StableDiffusionXLPipeline.from_single_file(str(targets.single_file), config=str(tiny_sdxl),
                                                      local_files_only=True, torch_dtype=torch.float32)
    merged = lora_trained(tiny_sdxl)
    from ioncannon.engine.weights.adapters import merge_adapters

    expected = {"unet": merge_adapters(merged.unet), "vae": merged.vae,
                "text_encoder": merge_adapters(merged.text_encoder),
                "text_encoder_2": merge_adapters(merged.text_encoder_2)}
    compared = 0
    for name, module in expected.items():
        want, got = module.state_dict(), getattr(back, name).state_dict()
        assert set(want) == set(got), name
        for key, value in want.items():
            # the file is fp16: every weight is the trained one rounded to fp16
            assert torch.equal(got[key], value.to(torch.float16).float()), f"{name}.{key}"
            compared += 1
    assert compared > 300
    assert pickle_files(ctx.paths.root) == []


def test_diffusers_folder_and_model_card(exported: tuple[StageContext, Any], images: dict[str, np.ndarray]) -> None:
    from diffusers import DDPMScheduler, StableDiffusionXLPipeline

    _, targets = exported
    folder = StableDiffusionXLPipeline.from_pretrained(str(targets.diffusers), local_files_only=True,
                                                       torch_dtype=torch.float32)
    folder.set_progress_bar_config(disable=True)
    folder.scheduler = DDPMScheduler.from_config(folder.scheduler.config)  # the sampler the reference drew with
    effect = np.abs(images["trained"] - images["base"]).max()
    assert np.abs(draw(folder) - images["trained"]).max() < effect / 10, "fp16 merged weights draw the trained picture"
    card = targets.model_card.read_text(encoding="utf-8")
    assert "StableDiffusionXLPipeline.from_pretrained" in card and "zwx cat" in card and "bf16 or fp32" in card
