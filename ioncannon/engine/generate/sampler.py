"""The fast text-to-image path shared by class images, the prompt pack and the benchmark."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ioncannon.engine.compile_cache import compile_blocks, use_compile_cache
from ioncannon.engine.families.base import unscale_latents
from ioncannon.engine.models.load import Components

_log = logging.getLogger("ioncannon")
TIMED = ("encode", "denoise", "decode")   # the parts of a batch `ImageSampler.timings` adds up, in seconds
ENCODE_CHUNK = 16   # prompts a text encoder takes at once (a run's prompts are encoded in one visit, chunk by chunk)


def initial_noise(seeds: list[int], shape: tuple[int, int, int]) -> torch.Tensor:
    """Per-image noise from a CPU generator: the same seed gives the same image on any device or batch."""
    return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds])


class ImageSampler:
    """Batched classifier-free-guidance sampling with one UNet call per step; compiled on CUDA when asked.

    On CUDA the weights run in `dtype` with channels-last memory and SDPA attention; `tuned` also fuses the
    q/k/v projections and lowers 1x1 convolutions to GEMMs when compiling. Both UNet and VAE decoder are
    compiled with static shapes, so every batch is padded to `batch_size`. `compile_scope` says what: "" nothing,
    "blocks" the denoiser's repeated blocks one by one (quicker to build), "model" the whole denoiser.
    """

    def __init__(
        self,
        parts: Components,
        device: torch.device,
        dtype: torch.dtype,
        *,
        sampler: str = "dpm",
        steps: int = 25,
        guidance: float = 7.0,
        resolution: int = 512,
        batch_size: int = 8,
        compile_scope: str = "",
        compile_cache: Path | None = None,
        decode_batch: int = 8,
        tuned: bool = True,
        frozen_weights: str = "plain",
    ) -> None:
        self.parts = parts
        self.device = device
        self.dtype = dtype
        self.sampler = sampler
        self.steps = steps
        self.guidance = guidance
        self.resolution = resolution
        self.batch_size = max(1, batch_size)
        self.decode_batch = max(1, decode_batch)
        self.compiled = False
        self.timings: dict[str, float] = dict.fromkeys(TIMED, 0.0)
        self._embeddings: dict[str, dict[str, torch.Tensor]] = {}
        from ioncannon.engine.families import family_for

        self.family = family_for(parts.family)
        self.family.make_scheduler(sampler, parts.noise_scheduler)  # fail early on a bad sampler name

        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True  # shapes are static, so the first pick is reused
        self.vae_dtype = self.family.vae_dtype(dtype)
        # small cards (a LoRA plan with fp8 base weights): the denoiser goes to the GPU in fp8, and the text encoders
        # stay in host memory, visiting the GPU only to encode a prompt not seen before
        self.small_card = frozen_weights != "plain"
        for module in parts.modules():
            module.requires_grad_(False)
            module.eval()
            want = self.vae_dtype if module is parts.vae else dtype
            if module is parts.unet and self.small_card:
                self.family.place_frozen(module, frozen_weights, device, dtype)
                continue
            on = torch.device("cpu") if self.small_card and module is not parts.vae else device
            current = next(module.parameters())
            if current.dtype != want or current.device != on:
                module.to(device=on, dtype=want)
        if cuda:
            # NHWC convolutions run on tensor cores without layout transposes (Flux's transformer has none)
            if self.family.channels_last:
                parts.unet.to(memory_format=torch.channels_last)
            parts.vae.to(memory_format=torch.channels_last)
        self.fused = cuda and tuned and not self.small_card and hasattr(parts.unet, "fuse_qkv_projections")
        if self.fused:
            # one GEMM for q, k and v instead of three; the model is only used for inference here
            parts.unet.fuse_qkv_projections()
        self.unet: Any = parts.unet
        self._vae_decode: Any = self._decode_eager
        if compile_scope not in ("", "blocks", "model"):
            raise ValueError(f"unknown compile scope {compile_scope!r}; use '', 'blocks' or 'model'")
        if compile_scope and cuda:
            if compile_cache is not None:
                use_compile_cache(compile_cache)
            import torch._inductor.config as inductor

            inductor.conv_1x1_as_mm = tuned  # SD's many 1x1 convolutions (proj_in/out, shortcuts) become GEMMs
            if compile_scope == "blocks":
                compile_blocks(parts.unet)
            else:
                self.unet = torch.compile(parts.unet, dynamic=False, fullgraph=False)
            self._vae_decode = torch.compile(self._decode_eager, dynamic=False)
            self.compiled = True

    def swap_weights(self, parts: Components) -> None:
        """Draw with `parts`' weights from now on (a model of the same shapes): they are copied into this sampler's
        modules in place, so a compiled UNet and VAE keep their kernels: class images and the prompt pack share
        one compile. ValueError when the shapes differ (then make a new sampler)."""
        if parts.family != self.parts.family:
            raise ValueError(f"a {parts.family} model cannot run on a {self.parts.family} sampler")
        if self.small_card:
            raise ValueError("a sampler with frozen (quantised) base weights is not shared")
        if self.fused:
            parts.unet.fuse_qkv_projections()  # the same parameter names as this sampler's fused UNet
        with torch.no_grad():
            for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
                mine, theirs = getattr(self.parts, name), getattr(parts, name)
                if (mine is None) != (theirs is None):
                    raise ValueError(f"the models differ in their {name}")
                if mine is None:
                    continue
                try:
                    mine.load_state_dict(theirs.state_dict(), strict=True)
                except RuntimeError as exc:
                    raise ValueError(f"the models' {name} weights differ in shape or names: {exc}") from exc
        self.parts.tokenizer, self.parts.tokenizer_2 = parts.tokenizer, parts.tokenizer_2
        self._embeddings.clear()  # the prompts' conditioning came from the old text encoders
        self.timings = dict.fromkeys(TIMED, 0.0)

    # ------------------------------------------------------------------ pieces

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.resolution // 8
        return (int(self.parts.vae.config.latent_channels), side, side)

    def prepare(self, prompts: list[str], negatives: list[str]) -> None:
        """Encode every prompt of a run up front: one visit of the text encoders (on a small card they live in host
        memory, and each visit moves gigabytes each way) instead of one a batch."""
        self.embed(prompts + (negatives if self.family.negative_prompts else []))

    @contextlib.contextmanager
    def _encoders_on_device(self) -> Iterator[None]:
        """On a small card the text encoders live in host memory and visit the GPU only while they encode."""
        if not self.small_card:
            yield
            return
        encoders = [m for _, m in self.parts.text_encoders()]
        for module in encoders:
            module.to(self.device)
        try:
            yield
        finally:
            for module in encoders:
                module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    @torch.inference_mode()
    def embed(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """The family's conditioning of each prompt (tokens padded like the diffusers pipeline), cached per prompt."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._embeddings]
        if todo:
            with self._encoders_on_device():
                for at in range(0, len(todo), ENCODE_CHUNK):
                    chunk = todo[at:at + ENCODE_CHUNK]
                    cond = self.family.encode_prompts(self.parts, chunk, self.resolution, self.device)
                    for i, prompt in enumerate(chunk):
                        self._embeddings[prompt] = {k: v[i].to(self.dtype) for k, v in cond.items()}
        keys = self._embeddings[prompts[0]].keys()
        return {k: torch.stack([self._embeddings[p][k] for p in prompts]) for k in keys}

    @torch.inference_mode()
    def denoise(self, latents: torch.Tensor, cond: dict[str, torch.Tensor],
                uncond: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run the family's sampler from pure noise (SD: guidance batches [uncond, cond] into one call per step)."""
        scheduler = self.family.make_scheduler(self.sampler, self.parts.noise_scheduler)
        return self.family.sample_latents(self.unet, scheduler, self.steps, latents, cond, uncond, self.guidance,
                                          self.dtype)

    def _decode_eager(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.parts.vae
        pixels = vae.decode(unscale_latents(vae, latents.to(self.vae_dtype)), return_dict=False)[0]
        return (pixels.float() / 2 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents to uint8 HWC images, decoded in chunks to bound VAE memory."""
        return torch.cat([self._vae_decode(chunk).cpu() for chunk in latents.split(self.decode_batch)]).numpy()

    def sample(self, prompts: list[str], negatives: list[str], seeds: list[int]) -> np.ndarray:
        """One batch: uint8 images (N, H, W, 3). On a compiled UNet the batch is padded to a fixed size."""
        n = len(prompts)
        if not (n == len(negatives) == len(seeds)) or n == 0:
            raise ValueError("prompts, negatives and seeds must be non-empty and of equal length")
        if self.compiled and n < self.batch_size:
            # a fixed batch keeps one compiled graph; the padding rows are computed and dropped
            pad = self.batch_size - n
            prompts, negatives, seeds = (
                prompts + [prompts[-1]] * pad,
                negatives + [negatives[-1]] * pad,
                seeds + [seeds[-1]] * pad,
            )
        latents = initial_noise(seeds, self.latent_shape).to(self.device)
        encoding = time.perf_counter()
        cond = self.embed(prompts)
        uncond = self.embed(negatives) if self.family.negative_prompts else cond   # unused by such a sampler
        start = time.perf_counter()
        self.timings["encode"] += start - encoding
        latents = self.denoise(latents, cond, uncond)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        mid = time.perf_counter()
        images = self.decode(latents)[:n]  # padded rows are decoded too: one compiled shape
        self.timings["denoise"] += mid - start
        self.timings["decode"] += time.perf_counter() - mid
        return images

    def warm_up(self) -> float:
        """Run one full-size batch so compilation and autotuning happen before timing starts; seconds taken."""
        start = time.perf_counter()
        steps, self.steps = self.steps, min(self.steps, 3)
        try:
            self.sample(["warm up"] * self.batch_size, [""] * self.batch_size, list(range(self.batch_size)))
        finally:
            self.steps = steps
            self.timings = dict.fromkeys(TIMED, 0.0)
        return time.perf_counter() - start
