"""Preview images during training: the instance prompt, a fixed seed, a few solver steps, decoded to PNG."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PREVIEW_STEPS = 20
PREVIEW_GUIDANCE = 5.0


@torch.no_grad()
def render_preview(family: Any, unet: Any, vae: Any, scheduler_config: dict[str, Any], cond: dict[str, torch.Tensor],
                   uncond: dict[str, torch.Tensor], resolution: int, seed: int, device: torch.device,
                   dtype: torch.dtype) -> np.ndarray:
    """One image (H, W, 3 uint8) from the current UNet with classifier-free guidance; `family` conditions it."""
    from diffusers import DPMSolverMultistepScheduler

    sched = DPMSolverMultistepScheduler.from_config(scheduler_config)
    sched.set_timesteps(PREVIEW_STEPS, device=device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    latents = torch.randn((1, 4, resolution // 8, resolution // 8), generator=gen).to(device)
    latents = latents * sched.init_noise_sigma
    both = {k: torch.cat([uncond[k], cond[k]]).to(device=device, dtype=dtype) for k in cond}
    inputs = family.denoiser_inputs(both)
    was_training = unet.training
    unet.eval()
    try:
        for t in sched.timesteps:
            model_in = sched.scale_model_input(torch.cat([latents] * 2), t).to(dtype)
            noise_uncond, noise_cond = unet(model_in, t, **inputs, return_dict=False)[0].float().chunk(2)
            noise = noise_uncond + PREVIEW_GUIDANCE * (noise_cond - noise_uncond)
            latents = sched.step(noise, t, latents, return_dict=False)[0]
    finally:
        unet.train(was_training)
    vae_dtype = next(vae.parameters()).dtype
    image = vae.decode((latents / vae.config.scaling_factor).to(device=device, dtype=vae_dtype), return_dict=False)[0]
    image = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return image[0].permute(1, 2, 0).cpu().numpy()
