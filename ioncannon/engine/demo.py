"""The demo's engine side: the tiny random-weight model it trains, and how fast a step of it runs here."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ioncannon.job.families import DEFAULT_FAMILY
from ioncannon.job.plan.box import HardwareInfo
from ioncannon.job.plan.demo import DEMO_IDENTIFIER, DEMO_RESOLUTION, DEMO_THREADS, demo_model_dir, demo_request
from ioncannon.job.plan.planner import Problems, plan_job
from ioncannon.job.plans import TrainPlan
from ioncannon.job.spec import JobSpec

# a demo step is the UNet's forward and backward plus the optimizer and the loop around them (measured ~1.3x)
_STEP_OVERHEAD = 1.3


def ensure_demo_model(workdir: str | Path, family: str = DEFAULT_FAMILY) -> Path:
    """The tiny random-weight diffusers folder the demo trains (made once per work dir and family, a few seconds)."""
    from ioncannon.engine.families import family_for

    return family_for(family).save_tiny(demo_model_dir(workdir, family))


def measure_step_s(family: str | None = None, threads: int = DEMO_THREADS, budget_s: float = 1.5) -> float:
    """Seconds one demo training step takes on this machine now (busy or not), from a second or two of the tiny
    UNet's forward and backward passes at the thread count the demo runs with."""
    import torch

    from ioncannon.engine.families import family_for

    fam = family_for(family or DEFAULT_FAMILY)
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


def demo_spec(workdir: str | Path, name: str = "", family: str = DEFAULT_FAMILY,
              train: TrainPlan | None = None) -> JobSpec:
    """The demo job as the planner makes it (its tiny model made first), for tests and benchmarks that run it
    without a door; `train` replaces the planned recipe."""
    from ioncannon.job.workdir import new_job_name

    request = demo_request(workdir, family, str(ensure_demo_model(workdir, family)),
                           name=name or new_job_name(workdir, DEMO_IDENTIFIER))
    if train is not None:
        request = dataclasses.replace(request, train=dataclasses.asdict(train))
    result = plan_job(request, HardwareInfo([], 0.0, 1, 0.0))
    if isinstance(result, Problems):
        raise ValueError("; ".join(result.sentences))
    return result.spec
