"""LoRA export: the kohya file and the diffusers LoRA folder reproduce the trained adapters' effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from ioncannon.engine.context import StageContext
from ioncannon.engine.export import export_model, pickle_files
from ioncannon.engine.models.load import Components
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import TrainPlan
from ioncannon.job.spec import JobSpec
from tests.engine.conftest import load_sd15

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]



def lora_trained(model: Path) -> Components:
    """Base weights plus non-zero adapters; alpha differs from rank so a lost scale would show."""
    from peft import LoraConfig, inject_adapter_in_model

    parts = load_sd15(str(model))
    torch.manual_seed(3)
    parts.unet.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=UNET_TARGETS))
    inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=2, init_lora_weights=False, target_modules=TEXT_TARGETS), parts.text_encoder
    )
    return parts


def pipeline(parts: Components):  # type: ignore[no-untyped-def]
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
        scheduler=parts.noise_scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = pipe("a photo of zwx cat", num_inference_steps=3, generator=torch.Generator().manual_seed(0),
               height=64, width=64, output_type="np")
    return out.images


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[StageContext, object]:
    root = tmp_path_factory.mktemp("lora")
    spec = JobSpec(name="l", photos_dir=str(root), identifier="zwx", class_name="cat", base_model=str(tiny_model),
                   resolution=64, device="cpu", train=TrainPlan(mode="lora", steps=50))
    paths = JobPaths(root / "job")
    paths.ensure()
    ctx = StageContext(spec=spec, paths=paths, workdir=root, emit=lambda e: None, should_stop=lambda: False)
    return ctx, export_model(ctx, lambda: lora_trained(tiny_model))


@pytest.fixture(scope="module")
def images(tiny_model: Path) -> dict[str, np.ndarray]:
    return {
        "trained": draw(pipeline(lora_trained(tiny_model))),
        "base": draw(pipeline(load_sd15(str(tiny_model)))),
    }


def test_kohya_file_has_the_a1111_layout(exported: tuple[StageContext, object]) -> None:
    _, targets = exported
    with safe_open(str(targets.lora_kohya), "pt") as fh:  # type: ignore[attr-defined]
        keys = set(fh.keys())
        alpha = fh.get_tensor("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha")
        te_alpha = fh.get_tensor("lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha")
    assert "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_down.weight" in keys
    assert "lora_te_text_model_encoder_layers_1_self_attn_out_proj.lora_up.weight" in keys
    assert float(alpha) == 8.0 and float(te_alpha) == 2.0
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys)


@pytest.mark.parametrize("which", ["kohya", "diffusers"])
def test_lora_files_change_outputs_like_the_trained_adapters(
    exported: tuple[StageContext, object], images: dict[str, np.ndarray], tiny_model: Path, which: str
) -> None:
    _, targets = exported
    source = targets.lora_kohya if which == "kohya" else targets.lora_diffusers  # type: ignore[attr-defined]
    pipe = pipeline(load_sd15(str(tiny_model)))
    pipe.load_lora_weights(str(source))
    got = draw(pipe)
    effect = np.abs(images["trained"] - images["base"]).max()
    assert effect > 0.05, "the adapters must change the picture for this test to mean anything"
    assert np.abs(got - images["trained"]).max() < effect / 50


def test_merged_exports_carry_the_lora(exported: tuple[StageContext, object], images: dict[str, np.ndarray]) -> None:
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    ctx, targets = exported
    folder = StableDiffusionPipeline.from_pretrained(
        str(targets.diffusers), local_files_only=True, torch_dtype=torch.float32
    )  # type: ignore[attr-defined]
    folder.set_progress_bar_config(disable=True)
    folder.scheduler = DDPMScheduler.from_config(folder.scheduler.config)  # the sampler the reference drew with
    got = draw(folder)
    effect = np.abs(images["trained"] - images["base"]).max()
    assert np.abs(got - images["trained"]).max() < effect / 10, "fp16 merged weights draw the trained picture"
    assert "lora" in targets.model_card.read_text(encoding="utf-8")  # type: ignore[attr-defined]
    assert pickle_files(ctx.paths.root) == []
