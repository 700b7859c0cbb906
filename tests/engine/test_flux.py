"""The Flux family on its tiny model: shapes, conditioning and sampling as diffusers has them, loaders, training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ioncannon.engine.families import family_for
from ioncannon.engine.families.flux import TINY_T5_TOKENS, pack
from ioncannon.engine.generate.sampler import ImageSampler
from ioncannon.engine.models.load import ModelLoadError, save_tiny_model
from ioncannon.job.families import detect_family

FLUX = family_for("flux")
PROMPT = "a photo of zwx person"
CPU = torch.device("cpu")




def pipeline(folder: Path) -> Any:
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(folder), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_tiny_flux_has_the_real_structure(tiny_flux: Path) -> None:
    parts = FLUX.load(str(tiny_flux))
    assert parts.family == "flux" and detect_family(str(tiny_flux)) == "flux"
    config = parts.unet.config
    assert type(parts.unet).__name__ == "FluxTransformer2DModel" and config.guidance_embeds
    assert config.num_layers >= 2 and config.num_single_layers >= 2
    # 16 latent channels packed 2x2 into 64-wide tokens; T5 hidden states attended to, CLIP's pooled vector
    assert parts.vae.config.latent_channels == 16 and config.in_channels == 64
    assert parts.vae.config.shift_factor == pytest.approx(0.1159)
    assert config.joint_attention_dim == parts.text_encoder_2.config.d_model
    assert config.pooled_projection_dim == parts.text_encoder.config.hidden_size
    assert type(parts.text_encoder_2).__name__ == "T5EncoderModel"
    assert sum(config.axes_dims_rope) == config.attention_head_dim
    assert type(parts.noise_scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"


def test_real_flux_shapes_match_the_reference() -> None:
    from diffusers import FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    from ioncannon.engine.families.flux import text_configs, transformer_config

    with torch.device("meta"):  # real sizes without allocating 33 GB
        transformer = FluxTransformer2DModel(**transformer_config("real"))
        t5 = T5EncoderModel(T5Config(**text_configs("real", 49408, 32128)[1]))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 11.8e9 < count(transformer) < 12.0e9
    assert 4.7e9 < count(t5) < 4.8e9


def test_conditioning_is_what_the_flux_pipeline_computes(tiny_flux: Path) -> None:
    parts = FLUX.load(str(tiny_flux))
    cond = FLUX.encode_prompts(parts, [PROMPT], 64, CPU)
    embeds, pooled, text_ids = pipeline(tiny_flux).encode_prompt(PROMPT, prompt_2=None, device="cpu",
                                                                 max_sequence_length=TINY_T5_TOKENS)
    assert cond["hidden"].shape == (1, TINY_T5_TOKENS, parts.text_encoder_2.config.d_model)
    assert torch.allclose(cond["hidden"], embeds, atol=1e-5) and torch.allclose(cond["pooled"], pooled, atol=1e-5)
    assert not text_ids.any()


def test_the_sampler_draws_what_the_flux_pipeline_draws(tiny_flux: Path) -> None:
    """FlowMatch Euler with the image-size shift, guidance as the model's input, packed tokens: same pixels."""
    sampler = ImageSampler(FLUX.load(str(tiny_flux)), CPU, torch.float32, steps=6, guidance=3.5, resolution=64,
                           batch_size=2)
    ours = sampler.sample([PROMPT, "an oil painting of zwx person"], ["", ""], [7, 8])
    from ioncannon.engine.generate.sampler import initial_noise

    noise = initial_noise([7, 8], sampler.latent_shape)
    theirs = pipeline(tiny_flux)([PROMPT, "an oil painting of zwx person"], height=64, width=64,
                                 num_inference_steps=6, guidance_scale=3.5, latents=pack(noise),
                                 max_sequence_length=TINY_T5_TOKENS, output_type="np").images
    assert ours.shape == (2, 64, 64, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(np.float32) - np.round(theirs * 255)).max() <= 1
    assert np.abs(ours[0].astype(np.float32) - ours[1]).max() > 10, "different prompts and seeds differ"


def test_flow_objective_interpolates_and_shifts_with_the_image_size(tiny_flux: Path) -> None:
    parts = FLUX.load(str(tiny_flux))
    small = FLUX.objective(parts.noise_scheduler, CPU, latent_hw=(8, 8))
    large = FLUX.objective(parts.noise_scheduler, CPU, latent_hw=(128, 128))  # 1024 px: 4,096 tokens
    draws = {}
    for name, objective in (("small", small), ("large", large)):
        t = torch.zeros(4000)
        objective.draw_timesteps(torch.Generator().manual_seed(1), t)
        assert t.min() > 0 and t.max() < 1000
        draws[name] = t
    assert draws["large"].mean() > draws["small"].mean() + 50, "larger images train at higher noise, as FLUX.1 samples"
    x0, noise = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    noisy, target = small.noisy_and_target(x0, noise, torch.tensor([250.0, 1000.0]))
    assert torch.allclose(noisy[0], 0.75 * x0[0] + 0.25 * noise[0]) and torch.allclose(noisy[1], noise[1])
    assert torch.equal(target, noise - x0)


def test_single_transformer_file_loads_with_its_companion_and_a_mismatch_is_one_sentence(
    tiny_flux: Path, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    parts = FLUX.load(str(tiny_flux))
    single = tmp_path / "flux1-dev-fp8-whatever.safetensors"
    save_file({k: v.float() for k, v in FLUX.single_file(parts).items()}, str(single))
    assert detect_family(str(single)) == "flux"
    back = FLUX.load(str(single), single_file_config=str(tiny_flux))
    want, got = parts.unet.state_dict(), back.unet.state_dict()
    assert set(want) == set(got)
    assert all(torch.equal(got[k], want[k].to(torch.bfloat16).float()) for k in want)  # the file is bf16
    with pytest.raises(ModelLoadError, match="is a Flux.1 model but the job is set to SD 1.5"):
        family_for("sd15").load(str(single))
    with pytest.raises(ModelLoadError, match="is an SD 1.5 model but the job is set to Flux.1"):
        FLUX.load(str(save_tiny_model(tmp_path / "sd15")))


def test_a_gated_hub_model_without_a_login_is_one_sentence_before_any_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no token file there
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # were a download attempted, it would fail differently
    with pytest.raises(ModelLoadError) as caught:
        FLUX.load("black-forest-labs/FLUX.1-dev")
    message = str(caught.value)
    assert "hf auth login" in message and "accept its licence" in message and message.count(". ") == 0


def test_real_size_converter_agrees_with_diffusers_own() -> None:
    """Our original-layout names and splits, at FLUX.1-dev's real shapes, are the ones diffusers reads."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from ioncannon.engine.families.flux import transformer_config
    from ioncannon.engine.weights.flux_keys import from_original, to_original

    with torch.device("meta"):
        model = FluxTransformer2DModel(**transformer_config("real"))
    state = model.state_dict()
    original = to_original(state)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in state.items()}
    ours = from_original(original, dict(model.config))
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in state.items()}


def test_training_steps_move_only_the_lora_and_fp8_base_weights_train_too(tiny_flux: Path) -> None:
    """A few LoRA steps on the tiny model, with plain and with fp8-stored frozen weights: finite, falling loss."""
    import dataclasses

    from ioncannon.engine.train.cache import TrainCache
    from ioncannon.engine.train.step import Trainer
    from ioncannon.job.plans import TrainPlan

    parts0 = FLUX.load(str(tiny_flux))
    cond = FLUX.encode_prompts(parts0, [PROMPT, "a photo of person", ""], 64, CPU)
    pick = lambda i: {k: v[i:i + 1] for k, v in cond.items()}  # noqa: E731
    torch.manual_seed(0)
    latents = torch.randn(4, 16, 8, 8)
    cache = TrainCache(latents, torch.zeros_like(latents), torch.zeros(0, 16, 8, 8), torch.zeros(0, 16, 8, 8),
                       pick(0), pick(1), pick(2), FLUX.tokenize(parts0, [PROMPT]), FLUX.tokenize(parts0, ["x"]),
                       0.3611)
    plan = TrainPlan(mode="lora", steps=80, learning_rate=5e-3, lora_rank=4, precision="fp32", optimizer="adamw",
                     prior_preservation=False, compile=False, checkpoint_every=0, sample_every=0)
    for weights in ("plain", "fp8"):
        parts = FLUX.load(str(tiny_flux))
        base = {k: v.clone() for k, v in parts.unet.state_dict().items()}
        trainer = Trainer(parts, dataclasses.replace(plan, base_weights=weights), cache, CPU)
        before = held_out_loss(trainer, latents)
        losses = [float(trainer.run_step(s)) for s in range(plan.steps)]
        after = held_out_loss(trainer, latents)
        assert all(np.isfinite(losses)), weights
        assert after < 0.9 * before, (weights, before, after)
        assert all(n.startswith("unet.") and "lora_" in n for n in trainer.flat.names)
        linear = parts.unet.transformer_blocks[0].attn.to_q.base_layer
        if weights == "fp8":
            assert type(linear.weight).__name__ == "Float8Tensor" and type(linear).__name__ == "Fp8Linear"
            assert type(parts.unet.x_embedder.weight).__name__ == "Parameter"  # outside the blocks: kept
        else:
            assert torch.equal(linear.weight, base["transformer_blocks.0.attn.to_q.weight"])


@torch.no_grad()
def held_out_loss(trainer: Any, latents: torch.Tensor) -> float:
    """The flow-matching loss on the training latents with one fixed draw of noise and timesteps."""
    g = torch.Generator().manual_seed(99)
    x0 = latents.repeat(4, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.zeros(x0.shape[0])
    trainer.objective.draw_timesteps(g, t)
    noisy, target = trainer.objective.noisy_and_target(x0, noise, t)
    cond = {k: v.expand(x0.shape[0], *v.shape[1:]) for k, v in trainer.cache.instance_cond.items()}
    pred = FLUX.predict(trainer.unet, noisy, t, cond)
    return float(torch.nn.functional.mse_loss(pred, target))


def test_the_small_card_sampler_stores_fp8_weights_and_draws_nearly_the_same(tiny_flux: Path) -> None:
    """A 24 GB plan's generation: fp8 blocks, text encoders visiting only to encode; the picture barely moves."""
    plain = ImageSampler(FLUX.load(str(tiny_flux)), CPU, torch.float32, steps=4, resolution=64, batch_size=2)
    small = ImageSampler(FLUX.load(str(tiny_flux)), CPU, torch.float32, steps=4, resolution=64, batch_size=2,
                         frozen_weights="fp8")
    assert type(small.parts.unet.single_transformer_blocks[0].proj_out.weight).__name__ == "Float8Tensor"
    args = ([PROMPT, PROMPT], ["", ""], [3, 4])
    want, got = plain.sample(*args).astype(np.float32), small.sample(*args).astype(np.float32)
    assert np.abs(want - got).mean() < 4 and np.abs(want[0] - want[1]).mean() > 4 * np.abs(want - got).mean()


def test_a_small_card_run_brings_the_text_encoders_to_the_gpu_once_and_encodes_no_negatives(
        tiny_flux: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a 24 GB plan the text encoders live in host memory (T5 alone is 9.5 GB): a pack of many prompts encodes
    them all in one visit, not one a batch, and FLUX.1's negatives (it has none) are never encoded."""
    from ioncannon.engine.generate.batches import fixed_batches, render
    from ioncannon.job.outputs import ImageJob

    small = ImageSampler(FLUX.load(str(tiny_flux)), CPU, torch.float32, steps=2, resolution=64, batch_size=2,
                         frozen_weights="fp8")
    encoded: list[list[str]] = []
    visits: list[str] = []
    real_encode = type(FLUX).encode_prompts
    monkeypatch.setattr(type(FLUX), "encode_prompts",
                        lambda self, parts, prompts, *a: encoded.append(list(prompts)) or real_encode(
                            self, parts, prompts, *a))
    t5 = small.parts.text_encoder_2
    real_to = type(t5).to
    monkeypatch.setattr(type(t5), "to", lambda self, *a, **k: visits.append(str(a or k)) or real_to(self, *a, **k))
    styles = ["oil painting", "pencil sketch", "cyberpunk"]
    jobs = [ImageJob(tmp_path / f"{i}.png", f"{PROMPT}, {style}", f"blurry {style}", i, style)
            for i, style in enumerate(s for s in styles for _ in range(2))]
    assert render(small, fixed_batches(jobs, 2), stage="generate", emit=lambda e: None, check_stop=lambda: None) == 6
    assert encoded == [[f"{PROMPT}, {s}" for s in styles]], "every prompt in one go, and no negative"
    assert len(visits) == 2, f"one trip to the device and one back: {visits}"
