"""The model-family interface: everything a stage asks of a model family, and the parts SD-like families share.

A family (one module per family, looked up with `family_for(name)`) owns:

- components: `build(size, seed)` makes random-weight components from configs ("tiny" for tests and the
  demo, "real" for benchmarks with the real shapes and FLOPs); `save_tiny(folder)` saves the tiny model as a
  diffusers folder; `load(source)` reads a hub id, a local diffusers folder or a single `.safetensors`
  file, after checking (by the file's keys or the folder's pipeline class) that it is this family's model;
- text conditioning, computed once and cached: `tokenize(parts, prompts)` gives the token ids of every
  tokenizer, `encode_tokens(parts, tokens)` the tensors the denoiser is conditioned on (differentiable, so
  a run that trains the text encoders calls it every step), `extra_conditioning(batch, resolution)` what
  does not depend on the prompt (SDXL's size and crop ids), `encode_prompts` all three at once, and
  `denoiser_inputs(cond)` turns those tensors into the denoiser's keyword arguments;
- the training objective: `objective(scheduler, device, latent_hw)` draws timesteps and gives the noisy input and
  the regression target (epsilon, v-prediction, flow matching); `predict(denoiser, latents, timesteps, cond)` is
  the one denoiser call (Flux packs the latents into tokens there); `lora_targets` the layers a LoRA adapts;
  `place_frozen(denoiser, kind, device, dtype)` puts it on the GPU, its frozen weights in fewer bits if asked;
- the sampler for class images, previews and the prompt pack: `make_scheduler(kind, training scheduler)`,
  `sample_latents(...)` (classifier-free guidance for SD; Flux's guidance is an input of the model), and
  `vae_dtype(dtype)`, the dtype its VAE decodes in safely;
- export layouts: `exports_full_model` (False: only the LoRA files, the merged model would be a copy of the base),
  `pipeline(parts)` (the diffusers folder), `save_lora(parts, folder)` (diffusers/peft
  LoRA), `kohya_lora(parts)` (the kohya/A1111/ComfyUI LoRA file), `single_file(parts, dtype)` (the
  original-layout checkpoint), `metadata_architecture` and `card_notes(spec)` for the model card;
- plans per VRAM: `info.profiles` (job/families.py, torch-free, so the wizard reads them without torch).

Stages never test which family they run; they call these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from ioncannon.engine.attention import AttentionShape
from ioncannon.engine.models.load import Components, ModelLoadError, classify_source
from ioncannon.engine.weights.trained import UNET_LORA_TARGETS
from ioncannon.job.families import FamilyInfo, detect_family, family_info, mismatch_message
from ioncannon.job.spec import JobSpec

Conditioning = dict[str, torch.Tensor]


SAMPLERS = ("dpm", "ddim")


def make_scheduler(kind: str, noise_scheduler: Any) -> Any:
    """DPM-Solver++ (2nd order multistep) or DDIM, configured from the model's training scheduler."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    config = dict(noise_scheduler.config)
    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    if kind == "ddim":
        return DDIMScheduler.from_config(config, set_alpha_to_one=False)
    raise ValueError(f"unknown sampler {kind!r}; choose one of {', '.join(SAMPLERS)}")


def scale_latents(vae: Any, mean: torch.Tensor) -> torch.Tensor:
    """VAE posterior means as the denoiser sees them: shifted (Flux's VAE has a shift) and scaled."""
    return (mean - (vae.config.get("shift_factor") or 0.0)) * vae.config.scaling_factor


def unscale_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """The inverse of scale_latents, for decoding."""
    return latents / vae.config.scaling_factor + (vae.config.get("shift_factor") or 0.0)


class NoiseObjective:
    """DDPM noise prediction (epsilon, or v when the scheduler says so), timesteps drawn uniformly."""

    timestep_dtype = torch.long

    def __init__(self, scheduler: Any, device: torch.device) -> None:
        ac = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
        self.sqrt_ac, self.sqrt_1mac = ac.sqrt(), (1 - ac).sqrt()
        self.num_timesteps = int(scheduler.config.num_train_timesteps)
        self.v_prediction = scheduler.config.prediction_type == "v_prediction"

    def draw_timesteps(self, generator: torch.Generator, out: torch.Tensor) -> None:
        """Fill `out` (long) in place from `generator`: CUDA-graph safe, and the same draws on resume."""
        torch.randint(0, self.num_timesteps, out.shape, generator=generator, out=out)

    def noisy_and_target(self, latents: torch.Tensor, noise: torch.Tensor,
                         timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.sqrt_ac[timesteps].view(-1, 1, 1, 1)
        s = self.sqrt_1mac[timesteps].view(-1, 1, 1, 1)
        noisy = a * latents + s * noise
        return noisy, (a * noise - s * latents if self.v_prediction else noise)


class Family:
    """One model family; see the module docstring for the contract. Subclasses fill in the abstract parts."""

    name: ClassVar[str] = ""
    pipeline_class: ClassVar[str] = ""        # the diffusers pipeline that loads the exported folder
    metadata_architecture: ClassVar[str] = ""  # modelspec.architecture of exported single files
    lora_targets: ClassVar[str | tuple[str, ...]] = UNET_LORA_TARGETS  # peft target_modules (a str is a regex)
    exports_full_model: ClassVar[bool] = True
    preview_guidance: ClassVar[float] = 5.0
    channels_last: ClassVar[bool] = True  # NHWC on CUDA: UNets' convolutions run without layout transposes
    negative_prompts: ClassVar[bool] = True  # its sampler guides away from a negative prompt (Flux's has none)
    # What training compiles on CUDA besides the optimizer: "" nothing, "blocks" the denoiser's repeated blocks one
    # by one (fused norms, modulation, RoPE and activations; one compile per block shape). Stays "" for a family
    # until a bench run on the card shows the compile repays itself on a job (bench/flux_speed.py,
    # bench/sdxl_speed.py: the "+compiled-blocks" plan variants; engine/train/levers.py).
    train_compile: ClassVar[str] = ""
    # What activation checkpointing keeps instead of recomputing: "" nothing, "attention" the attention outputs
    # (engine/train/levers.py). Off until measured, as above ("+keep-attention").
    checkpoint_keeps: ClassVar[str] = ""

    @property
    def info(self) -> FamilyInfo:
        return family_info(self.name)

    # ------------------------------------------------------------------ components
    def build(self, size: str = "tiny", seed: int = 0, tokenizer_dir: str | Path | None = None) -> Components:
        raise NotImplementedError

    def save_tiny(self, folder: str | Path, seed: int = 0) -> Path:
        raise NotImplementedError

    def load(
        self, source: str, dtype: torch.dtype = torch.float32, single_file_config: str | None = None
    ) -> Components:
        """This family's components from a hub id, diffusers folder or .safetensors file (ModelLoadError otherwise)."""
        asked = source
        source, kind, single_file_config = self.resolve(source, single_file_config)
        parts = self._load(source, kind, dtype, single_file_config)
        parts.family, parts.source = self.name, asked
        return parts

    def resolve(self, source: str, single_file_config: str | None = None) -> tuple[str, str, str | None]:
        """(source, kind, single_file_config) to read: a hub id the fetch stage downloaded becomes its local folder
        ("folder"); a single file takes its companion from there. ModelLoadError where `source` cannot be this
        family's model."""
        kind = classify_source(source)
        if kind in ("hub", "file"):
            from ioncannon.engine.hub_files import local_model

            # what the fetch stage downloaded: loading reads that folder and never asks the hub again
            fetched = local_model(source, self.name)
            if fetched and kind == "hub":
                source, kind = fetched, "folder"
            elif fetched:
                single_file_config = single_file_config or fetched
        if kind == "missing":
            raise ModelLoadError(f"Base model {source!r} does not exist. Check the path, or give a Hugging Face id.")
        if kind == "file" and not source.endswith(".safetensors"):
            raise ModelLoadError(
                f"{Path(source).name}: only .safetensors checkpoints are loaded (pickled .ckpt/.bin files can run "
                "code). Convert it to .safetensors first."
            )
        if kind in ("file", "folder"):
            found = detect_family(source)
            if found is not None and found != self.name:
                raise ModelLoadError(mismatch_message(source, found, self.name))
            if found is None and kind == "file":
                raise ModelLoadError(f"{Path(source).name} is not a checkpoint of a model family this version trains "
                                     f"({', '.join(f.label for f in _known())}): pick another file.")
        return source, kind, single_file_config

    def denoiser_skeleton(self, source: str) -> Any:
        """The denoiser's modules with no weights (on the meta device), shaped by `source`'s config: enough to
        carry trained LoRA adapters into the LoRA files of a family that exports nothing else."""
        raise NotImplementedError

    def _load(self, source: str, kind: str, dtype: torch.dtype, single_file_config: str | None) -> Components:
        raise NotImplementedError

    # ------------------------------------------------------------------ text conditioning
    def tokenize(self, parts: Components, prompts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_tokens(self, parts: Components, tokens: dict[str, torch.Tensor]) -> Conditioning:
        raise NotImplementedError

    def extra_conditioning(self, batch: int, resolution: int, device: torch.device) -> Conditioning:
        return {}

    @torch.no_grad()
    def encode_prompts(
        self, parts: Components, prompts: list[str], resolution: int, device: torch.device
    ) -> Conditioning:
        """Everything the denoiser is conditioned on for these prompts, fp32, on `device`."""
        tokens = {k: v.to(device) for k, v in self.tokenize(parts, prompts).items()}
        cond = {k: v.float() for k, v in self.encode_tokens(parts, tokens).items()}
        return {**cond, **self.extra_conditioning(len(prompts), resolution, device)}

    def denoiser_inputs(self, cond: Conditioning) -> dict[str, Any]:
        return {"encoder_hidden_states": cond["hidden"]}

    # ------------------------------------------------------------------ objective and sampler
    def objective(self, scheduler: Any, device: torch.device, latent_hw: tuple[int, int] = (64, 64)) -> Any:
        """Timestep draws, noisy input and target; `latent_hw` is the latent size (Flux shifts by it)."""
        return NoiseObjective(scheduler, device)

    def predict(self, denoiser: Any, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning,
                guidance: float | None = None) -> torch.Tensor:
        """The denoiser's output for (B, C, h, w) latents at `timesteps` (the scheduler's units), shaped as them."""
        return denoiser(latents, timesteps, **self.denoiser_inputs(cond), return_dict=False)[0]

    def place_frozen(self, denoiser: Any, kind: str, device: torch.device, dtype: torch.dtype) -> None:
        """Move the denoiser to `device` in `dtype`, its frozen weights stored as `kind` (a LoRA run's memory
        lever: "fp8" on Flux); only "plain" elsewhere."""
        if kind != "plain":
            raise ValueError(f"{self.name} has no {kind} base-weight plan; pick another plan")
        denoiser.to(device=device, dtype=dtype)

    def make_scheduler(self, kind: str, noise_scheduler: Any) -> Any:
        return make_scheduler(kind, noise_scheduler)

    def sample_latents(self, denoiser: Any, scheduler: Any, steps: int, latents: torch.Tensor, cond: Conditioning,
                       uncond: Conditioning, guidance: float, dtype: torch.dtype) -> torch.Tensor:
        """Denoise unit-variance noise `latents` in `steps` steps; [uncond, cond] go through one call per step."""
        scheduler.set_timesteps(steps, device=latents.device)
        latents = latents * scheduler.init_noise_sigma
        inputs = self.denoiser_inputs({k: torch.cat([uncond[k], cond[k]]).to(dtype) for k in cond})
        if latents.device.type == "cuda":
            latents = latents.contiguous(memory_format=torch.channels_last)
        for t in scheduler.timesteps:
            model_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            noise = denoiser(model_in.to(dtype), t, **inputs, return_dict=False)[0]
            uncond_noise, cond_noise = noise.chunk(2)
            guided = uncond_noise + guidance * (cond_noise - uncond_noise)
            latents = scheduler.step(guided, t, latents, return_dict=False)[0]
        return latents

    def vae_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return dtype

    def working_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype to load the base model in for caching, training and export, given the run's `dtype`
        (SD-sized models load in fp32 and are cast where they run)."""
        return torch.float32

    def attention_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype attention runs in for a run in `dtype` (SD-sized models run it under autocast)."""
        return dtype

    def attention_left_out(self, backward: bool) -> dict[str, str]:
        """SDPA backends this model never runs, in training (`backward`) or sampling, each with the reason: kernels
        that broke inside this model on a real card although they passed the kernel test."""
        return {}

    def attention_shapes(self, parts: Components, resolution: int, batch: int = 2) -> list[AttentionShape]:
        """Every distinct attention call of the UNet at `resolution`: self-attention over the latent pixels of
        each block with attention, and cross-attention to the prompt's tokens."""
        cfg = parts.unet.config
        blocks = list(cfg.block_out_channels)
        heads = cfg.num_attention_heads or cfg.attention_head_dim
        heads = list(heads) if isinstance(heads, (list, tuple)) else [heads] * len(blocks)
        side = resolution // 8   # the VAE's 8x downscale
        text = int(parts.tokenizer.model_max_length)
        shapes: set[AttentionShape] = set()
        levels = [(i, blocks[i], heads[i]) for i, kind in enumerate(cfg.down_block_types) if "CrossAttn" in kind]
        levels.append((len(blocks) - 1, blocks[-1], heads[-1]))   # the middle block, at the lowest resolution
        for i, channels, n in levels:
            seq = (side >> i) ** 2
            shapes.add(AttentionShape(batch, n, seq, seq, channels // n))
            shapes.add(AttentionShape(batch, n, seq, text, channels // n))
        return sorted(shapes, key=lambda s: (-s.q_len, -s.kv_len, s.head_dim))

    # ------------------------------------------------------------------ exports
    def pipeline(self, parts: Components) -> Any:
        raise NotImplementedError

    def save_lora(self, parts: Components, folder: Path) -> None:
        raise NotImplementedError

    def kohya_lora(self, parts: Components) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def single_file(self, parts: Components, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def lora_file_notes(self, spec: JobSpec, kohya: str, diffusers: str) -> list[str]:
        """Model-card lines on the LoRA files of a family that exports nothing else."""
        return []

    def card_notes(self, spec: JobSpec) -> list[str]:
        """Family-specific paragraphs for the model card (how to get good images out of it)."""
        return []


def _known() -> list[FamilyInfo]:
    from ioncannon.job.families import offered_families

    return offered_families()


def clip_tokens(tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's length, as the diffusers pipelines pad them."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids
