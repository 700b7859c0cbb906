"""The built-in demo: sample photos of a synthetic subject and a tiny random-weight model, all offline."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ioncannon.job import presets
from ioncannon.job.assets import assets_dir
from ioncannon.job.families import family_info
from ioncannon.job.plans import GeneratePlan, TrainPlan
from ioncannon.job.spec import JobSpec

DEMO_IDENTIFIER = "zwx"
DEMO_CLASS = "person"
DEMO_RESOLUTION = 64
# The tiny model's kernels are too small to share out: more threads buy nothing on an idle box, and on a busy
# one they wait on each other (measured on two busy cores: 35 minutes with torch's default threads, 2 with one).
DEMO_THREADS = 1
DEMO_TRAIN_SECONDS = 40.0
# a demo step is the UNet's forward and backward plus the optimizer and the loop around them (measured ~1.3x)
_STEP_OVERHEAD = 1.3

# Small enough that generation takes seconds on two CPU cores, yet every prompt gets a collage.
DEMO_GENERATE_PLAN = GeneratePlan(
    sampler="dpm", steps=10, guidance=7.0, images_per_prompt=4, batch_size=4, bare_token_images=4
)


def demo_photos_dir() -> Path:
    return assets_dir() / "demo_photos"


def ensure_demo_model(workdir: str | Path, family: str = "sd15") -> Path:
    """The tiny random-weight diffusers folder the demo trains (made once per work dir and family, a few seconds)."""
    from ioncannon.engine.families import family_for

    name = "tiny-sd-demo" if family == "sd15" else f"tiny-{family}-demo"
    return family_for(family).save_tiny(Path(workdir) / ".cache" / "models" / name)


def measure_step_s(family: str = "sd15", threads: int = DEMO_THREADS, budget_s: float = 1.5) -> float:
    """Seconds one demo training step takes on this machine now (busy or not), from a second or two of the tiny
    UNet's forward and backward passes at the thread count the demo runs with."""
    import torch

    from ioncannon.engine.families import family_for

    fam = family_for(family)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        parts = fam.build("tiny")
        unet = parts.unet.train()
        cond = fam.encode_prompts(parts, ["a photo", "a photo"], DEMO_RESOLUTION, torch.device("cpu"))
        side = DEMO_RESOLUTION // 8
        latents = torch.randn(2, unet.config.in_channels, side, side)
        t = torch.tensor([10, 500])
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - started < budget_s and len(times) < 20):
            t0 = time.perf_counter()
            unet.zero_grad(set_to_none=True)
            out = unet(latents, t, **fam.denoiser_inputs(cond), return_dict=False)[0]
            out.float().pow(2).mean().backward()
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    steady = sorted(times[1:])  # the first pass pays one-off allocations
    return steady[len(steady) // 2] * _STEP_OVERHEAD


def sized_demo_plan(family: str = "sd15") -> TrainPlan:
    """The demo's plan with its step count sized to about DEMO_TRAIN_SECONDS of training on this machine."""
    plan = presets.demo_plan_for(family)
    try:
        step_s = measure_step_s(family)
    except Exception:  # a family whose denoiser this quick pass cannot drive (Flux) keeps the fixed plan
        return plan
    return plan.size_to_machine(step_s, DEMO_TRAIN_SECONDS)


def demo_spec(
    workdir: str | Path, name: str = "", photos_dir: str | Path | None = None,
    identifier: str = DEMO_IDENTIFIER, class_name: str = DEMO_CLASS, family: str = "sd15",
    train: TrainPlan | None = None,
) -> JobSpec:
    """The demo job; `train` replaces the fixed demo plan (the CLI passes one sized to the machine)."""
    from ioncannon.job.workdir import new_job_name

    return JobSpec(
        name=name or new_job_name(workdir, identifier),
        photos_dir=str(photos_dir or demo_photos_dir()),
        identifier=identifier,
        class_name=class_name,
        base_model=str(ensure_demo_model(workdir, family)),
        family=family,
        resolution=DEMO_RESOLUTION,
        device="cpu",
        demo=True,
        train=train or presets.demo_plan_for(family),
        # the family's guidance: Flux takes it as an input of the model, where 3.5 is its own value
        generate=dataclasses.replace(DEMO_GENERATE_PLAN, guidance=family_info(family).generate.guidance),
        threads=DEMO_THREADS,
    )
