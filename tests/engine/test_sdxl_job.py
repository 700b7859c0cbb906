"""The learning check on the tiny SDXL model (its whole job runs in test_every_stage.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ioncannon.engine.families import family_for, load_trained
from ioncannon.engine.train.cache import load_cache, run_cache
from ioncannon.engine.train.loop import run_training
from ioncannon.job.spec import save_spec
from tests.engine.test_train_support import make_job

SDXL = family_for("sdxl")



def _losses(family: Any, parts: Any, latents: torch.Tensor, prompts: dict[str, str]) -> dict[str, float]:
    """The training loss on `latents` under each prompt, with one fixed set of noise and mid-range timesteps."""
    g = torch.Generator().manual_seed(0)
    x0 = latents.repeat(8, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(300, 800, (x0.shape[0],), generator=g)
    noisy = parts.noise_scheduler.add_noise(x0, noise, t)
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, prompt in prompts.items():
            cond = family.encode_prompts(parts, [prompt], 64, torch.device("cpu"))
            cond = {k: v.expand(x0.shape[0], *v.shape[1:]) for k, v in cond.items()}
            pred = parts.unet(noisy, t, **family.denoiser_inputs(cond)).sample
            out[name] = F.mse_loss(pred, noise).item()
    return out


def test_identifier_prompt_learns_the_subject_on_tiny_sdxl(tmp_path: Path, tiny_sdxl: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_sdxl, photos=4, class_images=8, steps=500, learning_rate=1.5e-3,
                      prior_preservation=True, checkpoint_every=0, sample_every=0)
    ctx.spec = ctx.spec.replace(family="sdxl")
    save_spec(ctx.paths, ctx.spec)
    run_cache(ctx)
    cache = load_cache(ctx)
    assert cache is not None and set(cache.instance_cond) == {"hidden", "pooled", "time_ids"}
    subject, klass = cache.instance_mean, cache.class_mean
    prompts = {"identifier": ctx.spec.instance_prompt, "class": ctx.spec.class_prompt}

    before = _losses(SDXL, SDXL.load(str(tiny_sdxl)), subject, prompts)
    before_class = _losses(SDXL, SDXL.load(str(tiny_sdxl)), klass, {"class": ctx.spec.class_prompt})["class"]
    run_training(ctx)
    trained = load_trained(ctx)
    after = _losses(SDXL, trained, subject, prompts)
    after_class = _losses(SDXL, trained, klass, {"class": ctx.spec.class_prompt})["class"]
    margin = 1 - after["identifier"] / after["class"]
    print(f"before {before}, after {after}, class images {before_class:.4f} -> {after_class:.4f}, margin {margin:.1%}")

    assert abs(before["identifier"] - before["class"]) < 0.05 * before["class"], "untrained, the prompts are alike"
    assert after["identifier"] < 0.5 * before["identifier"], "training fits the subject"
    assert margin > 0.15, "the identifier, not the class word, carries the subject"
    assert after_class < 0.5 * before_class and after_class < after["class"], "the class prompt still means the class"
