"""Stable Diffusion 1.x: one CLIP-L text tower, a UNet conditioned on its last hidden states, 512 px."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ioncannon.engine.families.base import Conditioning, Family, clip_tokens
from ioncannon.engine.models.load import (
    Components,
    _load_pretrained,
    _load_single_file,
    build_components,
    save_tiny_model,
)


class SD15(Family):
    name = "sd15"
    pipeline_class = "StableDiffusionPipeline"
    metadata_architecture = "stable-diffusion-v1"

    def build(self, size: str = "tiny", seed: int = 0, tokenizer_dir: str | Path | None = None) -> Components:
        return build_components("sd15" if size == "real" else size, seed=seed, tokenizer_dir=tokenizer_dir)

    def save_tiny(self, folder: str | Path, seed: int = 0) -> Path:
        return save_tiny_model(folder, seed=seed)

    def _load(self, source: str, kind: str, dtype: torch.dtype, single_file_config: str | None) -> Components:
        from diffusers import DDPMScheduler

        pipe = (
            _load_single_file(source, dtype, single_file_config) if kind == "file" else _load_pretrained(source, dtype)
        )
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        return Components(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, scheduler, source=source)

    def tokenize(self, parts: Components, prompts: list[str]) -> dict[str, torch.Tensor]:
        return {"ids": clip_tokens(parts.tokenizer, prompts)}

    def encode_tokens(self, parts: Components, tokens: dict[str, torch.Tensor]) -> Conditioning:
        return {"hidden": parts.text_encoder(tokens["ids"])[0]}

    def pipeline(self, parts: Components) -> Any:
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

        return StableDiffusionPipeline(
            unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
            scheduler=DPMSolverMultistepScheduler.from_config(parts.noise_scheduler.config),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )

    def save_lora(self, parts: Components, folder: Path) -> None:
        from diffusers import StableDiffusionPipeline

        from ioncannon.engine.weights.adapters import adapter_metadata, has_adapters, peft_state_dict

        unet, te = has_adapters(parts.unet), has_adapters(parts.text_encoder)
        StableDiffusionPipeline.save_lora_weights(
            str(folder),
            unet_lora_layers=peft_state_dict(parts.unet) if unet else None,
            text_encoder_lora_layers=peft_state_dict(parts.text_encoder) if te else None,
            unet_lora_adapter_metadata=adapter_metadata(parts.unet) if unet else None,
            text_encoder_lora_adapter_metadata=adapter_metadata(parts.text_encoder) if te else None,
            safe_serialization=True,
        )

    def kohya_lora(self, parts: Components) -> dict[str, torch.Tensor]:
        from ioncannon.engine.weights.adapters import kohya_state_dict

        return kohya_state_dict(parts.unet, parts.text_encoder)

    def single_file(self, parts: Components, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        from ioncannon.engine.weights.ldm_keys import to_ldm_checkpoint

        return to_ldm_checkpoint(parts.unet, parts.vae, parts.text_encoder, dtype)


FAMILY = SD15()
