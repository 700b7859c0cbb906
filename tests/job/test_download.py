"""Which hub files a family downloads, and the numbers a person reads: sizes, time, the disk sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioncannon.job.download import (
    FetchPlanError,
    HubFile,
    disk_problem,
    download_line,
    job_output_bytes,
    select_files,
    size_text,
)

FLUX_INDEX = {"_class_name": "FluxPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
              "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
              "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
              "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}
FLUX_FILES = [HubFile(p, n) for p, n in [
    ("flux1-dev.safetensors", 23_802_932_552), ("ae.safetensors", 335_304_388), ("model_index.json", 536),
    ("README.md", 4000), ("scheduler/scheduler_config.json", 273), ("text_encoder/config.json", 613),
    ("text_encoder/model.safetensors", 246_144_152), ("text_encoder_2/config.json", 782),
    ("text_encoder_2/model-00001-of-00002.safetensors", 4_994_582_224),
    ("text_encoder_2/model-00002-of-00002.safetensors", 4_530_066_360),
    ("text_encoder_2/model.safetensors.index.json", 19_885), ("tokenizer/vocab.json", 1_059_962),
    ("tokenizer_2/spiece.model", 791_656), ("transformer/config.json", 378),
    ("transformer/diffusion_pytorch_model-00001-of-00003.safetensors", 9_983_040_304),
    ("transformer/diffusion_pytorch_model-00002-of-00003.safetensors", 9_949_328_904),
    ("transformer/diffusion_pytorch_model-00003-of-00003.safetensors", 3_870_584_832),
    ("transformer/diffusion_pytorch_model.safetensors.index.json", 121_262), ("vae/config.json", 820),
    ("vae/diffusion_pytorch_model.safetensors", 167_666_902),
]]


def test_flux_takes_the_diffusers_shards_not_the_root_checkpoints() -> None:
    plan = select_files("black-forest-labs/FLUX.1-dev", "a" * 40, FLUX_FILES, FLUX_INDEX, "flux")
    paths = {f.path for f in plan.files}
    assert "flux1-dev.safetensors" not in paths and "ae.safetensors" not in paths and "README.md" not in paths
    assert "transformer/diffusion_pytorch_model-00003-of-00003.safetensors" in paths
    assert "text_encoder_2/model.safetensors.index.json" in paths and "tokenizer_2/spiece.model" in paths
    assert plan.variant is None and 33e9 < plan.total_bytes < 34e9
    assert size_text(plan.total_bytes) == "33.7 GB"
    # a transformer from a local file: its config still comes from the hub, its 24 GB do not
    companions = select_files("black-forest-labs/FLUX.1-dev", "a" * 40, FLUX_FILES, FLUX_INDEX, "flux",
                              weights_elsewhere=("transformer",))
    names = {f.path for f in companions.files}
    assert "transformer/config.json" in names and not any(n.startswith("transformer/diffusion") for n in names)
    assert 9e9 < companions.total_bytes < 10.5e9


def test_a_component_with_only_pickled_weights_is_refused_in_one_sentence() -> None:
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
    files = [HubFile("model_index.json", 10), HubFile("unet/config.json", 10),
             HubFile("unet/diffusion_pytorch_model.bin", 3_000)]
    with pytest.raises(FetchPlanError, match="no .safetensors weights for its unet"):
        select_files("someone/old-model", "b" * 40, files, index, "sd15")


def test_the_download_line_and_the_disk_sentence_carry_the_numbers() -> None:
    plan = select_files("black-forest-labs/FLUX.1-dev", "a" * 40, FLUX_FILES, FLUX_INDEX, "flux")
    assert download_line(plan, None) == "33.7 GB from the hub, about 11 min at an assumed 50.0 MB/s"
    assert download_line(plan, 200e6) == "33.7 GB from the hub, about 3 min at 200 MB/s measured"
    job = job_output_bytes("flux", "lora", "adamw", False, 228, 1024, exports_full_model=False, checkpoints=5,
                           weight_bytes=2)
    assert 1e9 < job < 3e9
    text = disk_problem(download=plan.total_bytes, download_dir=Path("/root/.cache/huggingface/hub"),
                        download_free=30_000_000_000, job=job, job_dir=Path("/workspace/ioncannon"),
                        job_free=30_000_000_000, same_disk=True)
    assert text is not None and "\n" not in text
    assert text.startswith("Not enough disk: 30.0 GB free") and "33.7 GB base model download" in text
    assert "export HF_HOME=" in text
    assert disk_problem(download=plan.total_bytes, download_dir=Path("/c"), download_free=80_000_000_000, job=job,
                        job_dir=Path("/w"), job_free=80_000_000_000, same_disk=True) is None


def test_the_half_precision_variant_is_taken_only_when_every_component_has_it() -> None:
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "tokenizer": ["transformers", "CLIPTokenizer"]}
    both = [HubFile("model_index.json", 10), HubFile("tokenizer/vocab.json", 10), HubFile("unet/config.json", 10),
            HubFile("unet/diffusion_pytorch_model.safetensors", 4_000), HubFile("vae/config.json", 10),
            HubFile("unet/diffusion_pytorch_model.fp16.safetensors", 2_000),
            HubFile("vae/diffusion_pytorch_model.safetensors", 400)]
    mixed = select_files("someone/half", "c" * 40, both, index, "sd15")
    assert mixed.variant is None  # the VAE has no fp16 copy: one variant name must load every part
    assert "unet/diffusion_pytorch_model.safetensors" in {f.path for f in mixed.files}
    full = [*both, HubFile("vae/diffusion_pytorch_model.fp16.safetensors", 200)]
    half = select_files("someone/half", "c" * 40, full, index, "sd15")
    assert half.variant == "fp16" and half.total_bytes == 10 + 10 + 10 + 2_000 + 10 + 200
