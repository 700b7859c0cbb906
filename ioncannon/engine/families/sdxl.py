"""Stable Diffusion XL: CLIP-L and OpenCLIP bigG text towers, a UNet with pooled-text and size/crop conditioning."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ioncannon.engine.families.base import Conditioning, Family, clip_tokens
from ioncannon.engine.models.load import (
    Components,
    ModelLoadError,
    _explain_load_failure,
    _make_encoder_image_preserving,
    folder_variant,
    scheduler_config,
    write_tiny_tokenizer,
)
from ioncannon.job.spec import JobSpec

TINY_RESOLUTION = 64
SCALING_FACTOR = 0.13025
_TINY_WIDTHS = (32, 48)  # the towers differ in width, as CLIP-L (768) and bigG (1280) do: loaders tell them apart by it


def unet_config(size: str) -> dict[str, Any]:
    if size == "real":
        return dict(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
    pooled = _TINY_WIDTHS[1]
    return dict(
        sample_size=TINY_RESOLUTION // 8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4), cross_attention_dim=sum(_TINY_WIDTHS), norm_num_groups=8,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=pooled + 6 * 8,
    )


def vae_config(size: str) -> dict[str, Any]:
    if size == "real":
        return dict(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=1024,
            block_out_channels=(128, 256, 512, 512), scaling_factor=SCALING_FACTOR, force_upcast=True,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        )
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=TINY_RESOLUTION,
        block_out_channels=(8, 16, 16, 16), norm_num_groups=4, scaling_factor=SCALING_FACTOR, force_upcast=True,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )


def text_configs(size: str, vocab_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """CLIP-L and OpenCLIP bigG (with projection) text towers."""
    if size == "real":
        one = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
        two = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                   num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
        return one, two
    ids = dict(bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    w1, w2 = _TINY_WIDTHS
    one = dict(vocab_size=vocab_size, hidden_size=w1, intermediate_size=2 * w1, num_hidden_layers=2,
               num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=w1, **ids)
    two = dict(vocab_size=vocab_size, hidden_size=w2, intermediate_size=2 * w2, num_hidden_layers=2,
               num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", projection_dim=w2, **ids)
    return one, two


class SDXL(Family):
    name = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    metadata_architecture = "stable-diffusion-xl-v1-base"

    # ------------------------------------------------------------------ components
    def build(self, size: str = "tiny", seed: int = 0, tokenizer_dir: str | Path | None = None) -> Components:
        """Random-weight SDXL: the real shapes (REFERENCE §9, "real") or a tiny CPU model ("tiny")."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        with tempfile.TemporaryDirectory(prefix="ioncannon-tok-") as tmp:  # read into memory, then removed
            tokenizer_dir = tokenizer_dir or write_tiny_tokenizer(Path(tmp))
            tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
            tokenizer_2 = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config(size))
        vae = AutoencoderKL(**vae_config(size))
        if size != "real":
            _make_encoder_image_preserving(vae)
        one, two = text_configs(size, len(tokenizer))
        text_encoder = CLIPTextModel(CLIPTextConfig(**one))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**two))
        return Components(unet, vae, text_encoder, tokenizer, DDPMScheduler(**scheduler_config()),
                          source=f"random-sdxl-{size}", family=self.name, text_encoder_2=text_encoder_2,
                          tokenizer_2=tokenizer_2)

    def save_tiny(self, folder: str | Path, seed: int = 0) -> Path:
        """A tiny random-weight SDXL diffusers folder (tests and the demo); made once, atomically."""
        folder = Path(folder)
        if (folder / "model_index.json").exists():
            return folder
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        parts = self.build("tiny", seed=seed, tokenizer_dir=write_tiny_tokenizer(tmp / "tokenizer"))
        self.pipeline(parts, sampler=False).save_pretrained(str(tmp), safe_serialization=True)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return folder

    def _load(self, source: str, kind: str, dtype: torch.dtype, single_file_config: str | None) -> Components:
        from diffusers import DDPMScheduler, StableDiffusionXLPipeline

        try:
            if kind == "file":
                kwargs: dict[str, Any] = {"torch_dtype": dtype}
                if single_file_config:
                    kwargs.update(config=single_file_config, local_files_only=True)
                pipe = StableDiffusionXLPipeline.from_single_file(source, **kwargs)
            else:
                pipe = StableDiffusionXLPipeline.from_pretrained(source, torch_dtype=dtype, use_safetensors=True,
                                                                 variant=folder_variant(source))
        except Exception as exc:  # hub, network and format errors come in many types
            raise ModelLoadError(_explain_load_failure(source, exc)) from exc
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        return Components(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, scheduler, source=source,
                          family=self.name, text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2)

    # ------------------------------------------------------------------ text conditioning
    def tokenize(self, parts: Components, prompts: list[str]) -> dict[str, torch.Tensor]:
        return {"ids": clip_tokens(parts.tokenizer, prompts), "ids_2": clip_tokens(parts.tokenizer_2, prompts)}

    def encode_tokens(self, parts: Components, tokens: dict[str, torch.Tensor]) -> Conditioning:
        """Both towers' penultimate hidden states side by side, and the second tower's projected pooled output."""
        one = parts.text_encoder(tokens["ids"], output_hidden_states=True)
        two = parts.text_encoder_2(tokens["ids_2"], output_hidden_states=True)
        hidden = torch.cat([one.hidden_states[-2], two.hidden_states[-2].to(one.hidden_states[-2].dtype)], dim=-1)
        return {"hidden": hidden, "pooled": two.text_embeds}

    def extra_conditioning(self, batch: int, resolution: int, device: torch.device) -> Conditioning:
        # original size, crop top-left, target size: our photos are square crops at the training size
        ids = torch.tensor([resolution, resolution, 0, 0, resolution, resolution], dtype=torch.float32, device=device)
        return {"time_ids": ids.expand(batch, -1).clone()}

    @torch.no_grad()
    def encode_prompts(
        self, parts: Components, prompts: list[str], resolution: int, device: torch.device
    ) -> Conditioning:
        cond = super().encode_prompts(parts, prompts, resolution, device)
        # SDXL base was trained with zeros for an empty prompt (its pipeline's force_zeros_for_empty_prompt)
        empty = torch.tensor([p == "" for p in prompts], device=device)
        for key in ("hidden", "pooled"):
            mask = empty.view(-1, *([1] * (cond[key].ndim - 1)))
            cond[key] = torch.where(mask, torch.zeros_like(cond[key]), cond[key])
        return cond

    def denoiser_inputs(self, cond: Conditioning) -> dict[str, Any]:
        return {"encoder_hidden_states": cond["hidden"],
                "added_cond_kwargs": {"text_embeds": cond["pooled"], "time_ids": cond["time_ids"]}}

    def vae_dtype(self, dtype: torch.dtype) -> torch.dtype:
        # the SDXL VAE overflows in fp16 (black or NaN images); bf16 has fp32's range
        return torch.bfloat16 if dtype == torch.float16 else dtype

    # ------------------------------------------------------------------ exports
    def pipeline(self, parts: Components, sampler: bool = True) -> Any:
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLPipeline

        scheduler = parts.noise_scheduler
        if sampler:
            scheduler = DPMSolverMultistepScheduler.from_config(parts.noise_scheduler.config)
        return StableDiffusionXLPipeline(
            vae=parts.vae, text_encoder=parts.text_encoder, text_encoder_2=parts.text_encoder_2,
            tokenizer=parts.tokenizer, tokenizer_2=parts.tokenizer_2, unet=parts.unet, scheduler=scheduler,
            force_zeros_for_empty_prompt=True, add_watermarker=False,
        )

    def save_lora(self, parts: Components, folder: Path) -> None:
        from diffusers import StableDiffusionXLPipeline

        from ioncannon.engine.weights.adapters import adapter_metadata, has_adapters, peft_state_dict

        def layers(module: Any) -> Any:
            return peft_state_dict(module) if module is not None and has_adapters(module) else None

        def meta(module: Any) -> Any:
            return adapter_metadata(module) if module is not None and has_adapters(module) else None

        StableDiffusionXLPipeline.save_lora_weights(
            str(folder), unet_lora_layers=layers(parts.unet), text_encoder_lora_layers=layers(parts.text_encoder),
            text_encoder_2_lora_layers=layers(parts.text_encoder_2), unet_lora_adapter_metadata=meta(parts.unet),
            text_encoder_lora_adapter_metadata=meta(parts.text_encoder),
            text_encoder_2_lora_adapter_metadata=meta(parts.text_encoder_2), safe_serialization=True,
        )

    def kohya_lora(self, parts: Components) -> dict[str, torch.Tensor]:
        from ioncannon.engine.weights.sdxl_keys import kohya_sdxl_lora

        return kohya_sdxl_lora(parts.unet, parts.text_encoder, parts.text_encoder_2)

    def single_file(self, parts: Components, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        from ioncannon.engine.weights.sdxl_keys import to_sgm_checkpoint

        return to_sgm_checkpoint(parts.unet, parts.vae, parts.text_encoder, parts.text_encoder_2, dtype)


    def card_notes(self, spec: JobSpec) -> list[str]:
        return [f"SDXL works best at {spec.resolution}×{spec.resolution} px with guidance around "
                f"{spec.generate.guidance:g}; decode with the VAE in bf16 or fp32 (in fp16 it overflows into "
                "black images)."]


FAMILY = SDXL()
