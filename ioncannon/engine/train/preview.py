"""Preview images during training: the instance prompt, a fixed seed, a few solver steps, decoded to PNG."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ioncannon.engine.families.base import unscale_latents

PREVIEW_STEPS = 20


@torch.no_grad()
def render_preview(family: Any, unet: Any, vae: Any, noise_scheduler: Any, cond: dict[str, torch.Tensor],
                   uncond: dict[str, torch.Tensor], resolution: int, seed: int, device: torch.device,
                   dtype: torch.dtype) -> np.ndarray:
    """One image (H, W, 3 uint8) from the current denoiser with the family's own sampler and guidance."""
    sched = family.make_scheduler("dpm", noise_scheduler)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    side = resolution // 8
    latents = torch.randn((1, int(vae.config.latent_channels), side, side), generator=gen).to(device)
    cond = {k: v.to(device) for k, v in cond.items()}
    uncond = {k: v.to(device) for k, v in uncond.items()}
    was_training = unet.training
    unet.eval()
    try:
        latents = family.sample_latents(unet, sched, PREVIEW_STEPS, latents, cond, uncond, family.preview_guidance,
                                        dtype)
    finally:
        unet.train(was_training)
    vae_dtype = next(vae.parameters()).dtype
    image = vae.decode(unscale_latents(vae, latents.float()).to(device=device, dtype=vae_dtype), return_dict=False)[0]
    image = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return image[0].permute(1, 2, 0).cpu().numpy()
