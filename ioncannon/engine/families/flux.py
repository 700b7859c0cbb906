"""FLUX.1-dev: a flow-matching transformer over packed latent tokens, conditioned on T5 and pooled CLIP; LoRA only."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ioncannon.engine.attention import AttentionShape
from ioncannon.engine.families.base import SAMPLERS, Conditioning, Family, clip_tokens
from ioncannon.engine.models.load import (
    Components,
    ModelLoadError,
    _explain_load_failure,
    _make_encoder_image_preserving,
    folder_variant,
    write_tiny_tokenizer,
)
from ioncannon.job.families import family_info
from ioncannon.job.hub import login_problem
from ioncannon.job.spec import JobSpec

SCALING_FACTOR, SHIFT_FACTOR = 0.3611, 0.1159
TRAIN_GUIDANCE = 3.5   # the guidance-embedding input during training, as diffusers' Flux DreamBooth script feeds it
TINY_T5_TOKENS = 32    # FLUX.1-dev reads 512 T5 tokens; the tiny model 32
_TINY_WIDTH = 32
# Attention and MLP projections of both block kinds (a peft regex over module names): the double blocks' image
# and text streams, the single blocks' q/k/v, fused MLP input and output.
LORA_TARGETS = (
    r"(transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2))"
    r"|single_transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v)|proj_mlp|proj_out))"
)
SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                 base_image_seq_len=256, max_image_seq_len=4096)


def transformer_config(size: str) -> dict[str, Any]:
    if size == "real":  # FLUX.1-dev (REFERENCE §9)
        return dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                    axes_dims_rope=(16, 56, 56))
    return dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=16,
                num_attention_heads=2, joint_attention_dim=_TINY_WIDTH, pooled_projection_dim=_TINY_WIDTH,
                guidance_embeds=True, axes_dims_rope=(4, 6, 6))


def vae_config(size: str) -> dict[str, Any]:
    common = dict(in_channels=3, out_channels=3, latent_channels=16, scaling_factor=SCALING_FACTOR,
                  shift_factor=SHIFT_FACTOR, use_quant_conv=False, use_post_quant_conv=False,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    if size == "real":
        return dict(common, layers_per_block=2, sample_size=1024, block_out_channels=(128, 256, 512, 512))
    return dict(common, layers_per_block=1, sample_size=64, block_out_channels=(8, 16, 16, 16), norm_num_groups=4)


def text_configs(size: str, clip_vocab: int, t5_vocab: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """CLIP-L (its pooled output) and the T5-XXL encoder (its hidden states)."""
    if size == "real":
        clip = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
        t5 = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                  feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
        return clip, t5
    ids = dict(bos_token_id=clip_vocab - 2, eos_token_id=clip_vocab - 1, pad_token_id=clip_vocab - 1)
    clip = dict(vocab_size=clip_vocab, hidden_size=_TINY_WIDTH, intermediate_size=2 * _TINY_WIDTH,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                projection_dim=_TINY_WIDTH, **ids)
    t5 = dict(vocab_size=t5_vocab, d_model=_TINY_WIDTH, d_kv=8, d_ff=2 * _TINY_WIDTH, num_layers=2, num_heads=4,
              feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    return clip, t5


def write_tiny_t5_tokenizer(folder: str | Path, max_length: int = TINY_T5_TOKENS) -> Path:
    """A small Unigram (SentencePiece-style) tokenizer trained here from prompt words, saved as a T5 tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    from ioncannon.engine.models.load import _TINY_WORDS

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      show_progress=False)
    words = list(_TINY_WORDS) + ["zwx", "sks", "ohwx"]
    tok.train_from_iterator([" ".join(words)] * 4 + words, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    wrapped = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                              extra_ids=0, model_max_length=max_length)
    folder = Path(folder)
    wrapped.save_pretrained(str(folder))
    return folder


def image_shift(config: Any, image_tokens: int) -> float:
    """mu of FLUX.1's resolution-dependent timestep shift: 0.5 at 256 image tokens, 1.15 at 4,096 (1024 px)."""
    lo, hi = float(config["base_image_seq_len"]), float(config["max_image_seq_len"])
    a, b = float(config["base_shift"]), float(config["max_shift"])
    return a + (b - a) * (image_tokens - lo) / (hi - lo)


class FlowObjective:
    """Rectified flow: x_t = (1 - s) x_0 + s noise, target noise - x_0 (the velocity).

    The noise level s is drawn logit-normal and shifted by the image size (mu of `image_shift`), the same
    resolution-dependent shift FLUX.1 samples with, so training spends its steps where generation needs them.
    Timesteps are s x 1000, the scheduler's units.
    """

    timestep_dtype = torch.float32

    def __init__(self, scheduler: Any, device: torch.device, latent_hw: tuple[int, int]) -> None:
        h, w = latent_hw
        self.num_timesteps = int(scheduler.config.num_train_timesteps)
        self.exp_mu = math.exp(image_shift(scheduler.config, (h // 2) * (w // 2)))

    def draw_timesteps(self, generator: torch.Generator, out: torch.Tensor) -> None:
        """Fill `out` (float) in place from `generator`: CUDA-graph safe, and the same draws on resume."""
        torch.randn(out.shape, generator=generator, out=out)
        out.sigmoid_()
        # s' = e^mu / (e^mu + 1/s - 1), the time shift, written in place
        out.reciprocal_().sub_(1).add_(self.exp_mu).reciprocal_().mul_(self.exp_mu * self.num_timesteps)

    def noisy_and_target(self, latents: torch.Tensor, noise: torch.Tensor,
                         timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = (timesteps / self.num_timesteps).view(-1, 1, 1, 1).to(latents.dtype)
        return (1 - s) * latents + s * noise, noise - latents


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents as (B, h/2 * w/2, 4C) tokens of 2x2 patches, FluxPipeline's order."""
    b, c, h, w = latents.shape
    return latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, d = tokens.shape
    return tokens.reshape(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


class Flux(Family):
    name = "flux"
    pipeline_class = "FluxPipeline"
    metadata_architecture = "flux-1-dev"
    lora_targets = LORA_TARGETS
    exports_full_model = False
    preview_guidance = TRAIN_GUIDANCE
    channels_last = False  # a transformer over tokens: no convolutions to lay out
    negative_prompts = False  # guidance is an input of the distilled model: nothing to encode for a negative

    def __init__(self) -> None:
        self._ids: dict[tuple[Any, ...], torch.Tensor] = {}

    # ------------------------------------------------------------------ components
    def build(self, size: str = "tiny", seed: int = 0, tokenizer_dir: str | Path | None = None) -> Components:
        """Random-weight Flux: the real FLUX.1-dev shapes ("real") or a tiny CPU model ("tiny").

        `tokenizer_dir` holds the CLIP tokenizer; the T5 tokenizer goes into its sibling `tokenizer_2`.
        """
        from diffusers import AutoencoderKL, FluxTransformer2DModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

        with tempfile.TemporaryDirectory(prefix="ioncannon-tok-") as tmp:  # read into memory, then removed
            tokenizer_dir = write_tiny_tokenizer(tokenizer_dir or Path(tmp) / "tokenizer")
            t5_dir = write_tiny_t5_tokenizer(Path(tokenizer_dir).parent / "tokenizer_2",
                                             512 if size == "real" else TINY_T5_TOKENS)
            tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
            tokenizer_2 = T5TokenizerFast.from_pretrained(str(t5_dir))
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(**transformer_config(size))
        vae = AutoencoderKL(**vae_config(size))
        if size != "real":
            _make_encoder_image_preserving(vae)
        clip, t5 = text_configs(size, len(tokenizer), len(tokenizer_2))
        text_encoder = CLIPTextModel(CLIPTextConfig(**clip))
        text_encoder_2 = T5EncoderModel(T5Config(**t5))
        return Components(transformer, vae, text_encoder, tokenizer, self._scheduler(), source=f"random-flux-{size}",
                          family=self.name, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)

    @staticmethod
    def _scheduler(config: Any = None) -> Any:
        from diffusers import FlowMatchEulerDiscreteScheduler

        if config is not None:
            return FlowMatchEulerDiscreteScheduler.from_config(config)
        return FlowMatchEulerDiscreteScheduler(**SCHEDULER)

    def save_tiny(self, folder: str | Path, seed: int = 0) -> Path:
        """A tiny random-weight Flux diffusers folder (tests and the demo); made once, atomically."""
        folder = Path(folder)
        if (folder / "model_index.json").exists():
            return folder
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        parts = self.build("tiny", seed=seed, tokenizer_dir=tmp / "tokenizer")
        self.pipeline(parts).save_pretrained(str(tmp), safe_serialization=True)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return folder

    def _load(self, source: str, kind: str, dtype: torch.dtype, single_file_config: str | None) -> Components:
        from diffusers import FluxPipeline

        # the transformer of a single file; everything else from the companion diffusers model (FLUX.1-dev's own)
        companion = (single_file_config or family_info(self.name).default_model) if kind == "file" else source
        problem = login_problem(companion)
        if problem:
            raise ModelLoadError(problem)
        try:
            if kind == "file":
                pipe = FluxPipeline.from_pretrained(companion, transformer=None, torch_dtype=dtype)
                pipe.transformer = self._transformer_from_file(source, companion, dtype)
            else:
                pipe = FluxPipeline.from_pretrained(source, torch_dtype=dtype, use_safetensors=True,
                                                    variant=folder_variant(source))
        except ModelLoadError:
            raise
        except Exception as exc:  # hub, network and format errors come in many types
            raise ModelLoadError(_explain_load_failure(source, exc)) from exc
        return Components(pipe.transformer, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                          self._scheduler(pipe.scheduler.config), source=source, family=self.name,
                          text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2)

    def denoiser_skeleton(self, source: str) -> Any:
        from diffusers import FluxTransformer2DModel

        source, kind, single_file_config = self.resolve(source)
        folder = (single_file_config or family_info(self.name).default_model) if kind == "file" else source
        try:
            config = FluxTransformer2DModel.load_config(folder, subfolder="transformer")
        except Exception as exc:  # hub, network and format errors come in many types
            raise ModelLoadError(_explain_load_failure(folder, exc)) from exc
        with torch.device("meta"):
            return FluxTransformer2DModel.from_config(config)

    @staticmethod
    def _transformer_from_file(path: str, companion: str, dtype: torch.dtype) -> Any:
        """A transformer checkpoint in the original (BFL/ComfyUI) layout, shaped by the companion's config."""
        from diffusers import FluxTransformer2DModel
        from safetensors.torch import load_file

        from ioncannon.engine.weights.flux_keys import from_original

        config = FluxTransformer2DModel.load_config(companion, subfolder="transformer")
        with torch.device("meta"):
            model = FluxTransformer2DModel.from_config(config)
        state = from_original(load_file(path), dict(model.config))
        try:
            model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"{Path(path).name} does not fit the FLUX.1 transformer of {companion} "
                                 f"({str(exc).splitlines()[0][:120]}): pick a FLUX.1-dev transformer file.") from exc
        return model

    # ------------------------------------------------------------------ text conditioning
    def tokenize(self, parts: Components, prompts: list[str]) -> dict[str, torch.Tensor]:
        t5 = parts.tokenizer_2
        ids_2 = t5(prompts, padding="max_length", max_length=t5.model_max_length, truncation=True,
                   return_tensors="pt").input_ids
        return {"ids": clip_tokens(parts.tokenizer, prompts), "ids_2": ids_2}

    def encode_tokens(self, parts: Components, tokens: dict[str, torch.Tensor]) -> Conditioning:
        """T5's last hidden states (the sequence the transformer attends to) and CLIP's pooled output."""
        pooled = parts.text_encoder(tokens["ids"], output_hidden_states=False).pooler_output
        hidden = parts.text_encoder_2(tokens["ids_2"], output_hidden_states=False)[0]
        return {"hidden": hidden, "pooled": pooled}

    def denoiser_inputs(self, cond: Conditioning) -> dict[str, Any]:
        return {"encoder_hidden_states": cond["hidden"], "pooled_projections": cond["pooled"]}

    def vae_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.bfloat16 if dtype == torch.float16 else dtype

    # ------------------------------------------------------------------ objective and denoiser call
    def objective(self, scheduler: Any, device: torch.device, latent_hw: tuple[int, int] = (64, 64)) -> FlowObjective:
        return FlowObjective(scheduler, device, latent_hw)

    def _positions(self, tokens: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """RoPE positions: (tokens, 3) zeros for the text, (h*w, 3) rows and columns for the image (tokens=0).
        Made once per shape and kept, so a captured CUDA graph reads the same tensors."""
        key = (tokens, h, w, device, dtype)
        if key not in self._ids:
            if tokens:
                ids = torch.zeros(tokens, 3, device=device, dtype=dtype)
            else:
                ids = torch.zeros(h, w, 3, device=device, dtype=dtype)
                ids[..., 1] = torch.arange(h, device=device, dtype=dtype)[:, None]
                ids[..., 2] = torch.arange(w, device=device, dtype=dtype)[None, :]
            self._ids[key] = ids.reshape(-1, 3)
        return self._ids[key]

    def predict(self, denoiser: Any, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning,
                guidance: float | None = None) -> torch.Tensor:
        """The velocity for (B, 16, h, w) latents: packed into 2x2 tokens, guidance fed as the model's input."""
        b, _, h, w = latents.shape
        hidden = cond["hidden"]
        dtype, device = hidden.dtype, latents.device
        config = denoiser.config
        embed = None
        if config.guidance_embeds:
            embed = torch.full((b,), TRAIN_GUIDANCE if guidance is None else guidance, device=device,
                               dtype=torch.float32)
        out = denoiser(
            hidden_states=pack(latents.to(dtype)), timestep=timesteps.to(torch.float32).expand(b) / 1000,
            guidance=embed, pooled_projections=cond["pooled"], encoder_hidden_states=hidden,
            txt_ids=self._positions(hidden.shape[1], 0, 0, device, dtype),
            img_ids=self._positions(0, h // 2, w // 2, device, dtype), return_dict=False,
        )[0]
        return unpack(out, h, w)

    def place_frozen(self, denoiser: Any, kind: str, device: torch.device, dtype: torch.dtype) -> None:
        """On `device`; "fp8" stores the blocks' linear layers (99% of the weights) in fp8 through torchao."""
        if kind == "plain":
            denoiser.to(device=device, dtype=dtype)
            return
        if kind != "fp8":
            raise ValueError(f"unknown base-weight storage {kind!r}; use plain or fp8")
        from ioncannon.engine.weights.quantise import quantise_linear_layers

        quantise_linear_layers(denoiser, ("transformer_blocks", "single_transformer_blocks"), device, dtype)

    # ------------------------------------------------------------------ sampler
    def make_scheduler(self, kind: str, noise_scheduler: Any) -> Any:
        """FlowMatch Euler for every sampler name: Flux is trained for it (the name is checked, not used)."""
        if kind not in SAMPLERS:
            raise ValueError(f"unknown sampler {kind!r}; choose one of {', '.join(SAMPLERS)}")
        return self._scheduler(noise_scheduler.config)

    def sample_latents(self, denoiser: Any, scheduler: Any, steps: int, latents: torch.Tensor, cond: Conditioning,
                       uncond: Conditioning, guidance: float, dtype: torch.dtype) -> torch.Tensor:
        """FLUX.1's sampler: Euler over the shifted sigmas 1 .. 1/steps, guidance as an input, no negative prompt."""
        b, _, h, w = latents.shape
        sigmas = np.linspace(1.0, 1 / steps, steps).tolist()
        scheduler.set_timesteps(sigmas=sigmas, mu=image_shift(scheduler.config, (h // 2) * (w // 2)),
                                device=latents.device)
        cond = {k: v.to(dtype) for k, v in cond.items()}
        for t in scheduler.timesteps:
            velocity = self.predict(denoiser, latents, t, cond, guidance)
            latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
        return latents

    # ------------------------------------------------------------------ exports
    def pipeline(self, parts: Components) -> Any:
        from diffusers import FluxPipeline

        return FluxPipeline(scheduler=self._scheduler(parts.noise_scheduler.config), vae=parts.vae,
                            text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                            text_encoder_2=parts.text_encoder_2, tokenizer_2=parts.tokenizer_2, transformer=parts.unet)

    def save_lora(self, parts: Components, folder: Path) -> None:
        from diffusers import FluxPipeline

        from ioncannon.engine.weights.adapters import adapter_metadata, peft_state_dict

        FluxPipeline.save_lora_weights(str(folder), transformer_lora_layers=peft_state_dict(parts.unet),
                                       transformer_lora_adapter_metadata=adapter_metadata(parts.unet),
                                       safe_serialization=True)

    def kohya_lora(self, parts: Components) -> dict[str, torch.Tensor]:
        from ioncannon.engine.weights.adapters import lora_pairs
        from ioncannon.engine.weights.flux_keys import kohya_flux_lora

        return kohya_flux_lora(lora_pairs(parts.unet))

    def single_file(self, parts: Components, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
        """The transformer alone in the original layout (ComfyUI's models/diffusion_models), adapters merged."""
        from ioncannon.engine.weights.adapters import merge_adapters
        from ioncannon.engine.weights.flux_keys import to_original

        state = merge_adapters(parts.unet).state_dict()
        return {k: v.to(dtype).contiguous() for k, v in to_original(state).items()}

    def lora_file_notes(self, spec: JobSpec, kohya: str, diffusers: str) -> list[str]:
        base = spec.base_model
        return [
            f"- `{kohya}`: the LoRA for ComfyUI (models/loras, a LoraLoaderModelOnly node after the FLUX.1-dev "
            "model) and Forge (models/Lora); original block names, kohya layout.",
            f"- `{diffusers}/`: the LoRA for diffusers: `FluxPipeline.from_pretrained(\"{base}\")` then "
            f"`pipe.load_lora_weights(\"{diffusers}\")`.",
            "- No merged model is written: it would be a 24 GB copy of the base model. Load the LoRA on "
            f"`{base}` instead.",
        ]

    def card_notes(self, spec: JobSpec) -> list[str]:
        return [f"FLUX.1-dev draws best at {spec.resolution}×{spec.resolution} px with about {spec.generate.steps} "
                f"steps and guidance {spec.generate.guidance:g} (an input of the model: no negative prompt, no "
                "classifier-free guidance); LoRA strength 1.0."]

    def attention_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return self.working_dtype(dtype)

    def attention_left_out(self, backward: bool) -> dict[str, str]:
        # Every FLUX.1 training run on an H100 or H200 with torch 2.11 / cuDNN 9.19 died in its first backward under
        # cuDNN (an illegal memory access), ours and diffusers' script alike, while the kernel test passed cuDNN at
        # the same shape in both layouts, gradients checked (see attention.LAYOUTS). Flash trained it
        # (bench/RESULTS.md; bench/flux_kernels.py runs the test and the model without this rule). Not tied to a
        # version: no fixed one is known, and flash costs about a millisecond more an attention call.
        if backward:
            return {"cudnn": "its fused attention backward crashed FLUX.1 training on an H100 and an H200 "
                             "(cuDNN 9.19) although it passed the kernel test"}
        return {}

    def attention_shapes(self, parts: Components, resolution: int, batch: int = 1) -> list[AttentionShape]:
        """Joint attention over the prompt's T5 tokens and the image's 2x2-packed latent tokens, in every block."""
        cfg = parts.unet.config
        seq = (resolution // 16) ** 2 + int(parts.tokenizer_2.model_max_length)
        return [AttentionShape(batch, cfg.num_attention_heads, seq, seq, cfg.attention_head_dim)]

    def working_dtype(self, dtype: torch.dtype) -> torch.dtype:
        # 12 B + 4.7 B parameters: loading in fp32 first would need ~68 GB of RAM for nothing
        return dtype


FAMILY = Flux()
