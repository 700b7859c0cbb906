"""A whole SDXL job through the real runner on the tiny SDXL model, and the learning check on it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from ioncannon.engine.demo import demo_spec
from ioncannon.engine.export import export_targets
from ioncannon.engine.families import family_for, load_trained
from ioncannon.engine.train.cache import load_cache, run_cache
from ioncannon.engine.train.loop import run_training
from ioncannon.engine.weights.trained import trained_info
from ioncannon.job import handle
from ioncannon.job.events import SampleReady, StageFinished
from ioncannon.job.lock import wait_for_exit
from ioncannon.job.spec import save_spec
from ioncannon.job.state import EventTail, read_state
from ioncannon.job.workdir import create_job
from tests.engine.test_train_support import make_job

SDXL = family_for("sdxl")



@pytest.mark.slow
def test_every_stage_runs_on_tiny_sdxl_through_the_runner(workdir: Path) -> None:
    spec = demo_spec(workdir, name="xl", family="sdxl")
    # LoRA on the UNet and both text towers: the widest SDXL path
    spec = spec.replace(
        train=dataclasses.replace(spec.train, mode="lora", train_text_encoder=True, steps=24, learning_rate=1e-3,
                                  lora_rank=4, checkpoint_every=12, sample_every=12, num_class_images=4),
        generate=dataclasses.replace(spec.generate, images_per_prompt=1, bare_token_images=1, steps=3),
    )
    paths = create_job(workdir, spec)
    events = EventTail(paths.events_file)
    handle.start(paths, workdir)
    assert wait_for_exit(paths, 600), "the runner did not finish"
    state = read_state(paths)
    assert state.status == "finished", (state.message, state.hint)
    seen = events.read_new()
    finished = [e.stage for e in seen if isinstance(e, StageFinished) and not e.skipped]
    assert finished[:6] == ["prepare", "class_images", "cache", "train", "export", "generate"]
    assert [e.stage for e in seen if isinstance(e, StageFinished) and e.skipped] == ["fetch"]  # a local model
    previews = [e for e in seen if isinstance(e, SampleReady) and e.stage == "train"]
    assert len(previews) == 2 and all(Path(e.path).is_file() for e in previews)

    info = trained_info(paths)
    assert info is not None and info["text_encoders"] == ["text_encoder", "text_encoder_2"]
    targets = export_targets(spec, paths)
    for target in targets.wanted(lora=True):
        assert target.exists(), target
    collages = sorted(paths.outputs.glob("*/*-0000.jpg"))
    assert collages and (paths.outputs / "contact_sheet.jpg").is_file()
    # class images are drawn by the base model at the family's resolution
    from PIL import Image

    with Image.open(next(paths.class_images(spec.class_name).glob("*.png"))) as im:
        assert im.size == (spec.resolution, spec.resolution)


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
