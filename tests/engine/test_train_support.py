"""Shared pieces for the training tests: a tiny model on disk and a job with synthetic photos and class images."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ioncannon.engine.context import StageContext
from ioncannon.engine.models.load import TINY_RESOLUTION
from ioncannon.job.events import Event
from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.presets import demo_plan
from ioncannon.job.spec import JobSpec, save_spec

IDENTIFIER = "zq"
CLASS = "dog"


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """The tiny model's ops are too small to gain from threads, and on a busy machine OpenMP barriers stall for long."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)




def subject_image(seed: int, size: int = TINY_RESOLUTION) -> Image.Image:
    """The synthetic subject: a yellow disc with a dark stripe on teal, jittered a little per photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = size / 2 + rng.uniform(-4, 4), size / 2 + rng.uniform(-4, 4)
    img = np.zeros((size, size, 3), np.float32)
    img[:] = (20, 140, 150)
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (size * 0.3) ** 2
    img[disc] = (240, 210, 30)
    img[disc & (np.abs(yy - cy) < size * 0.05)] = (30, 20, 10)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def class_image(seed: int, size: int = TINY_RESOLUTION) -> Image.Image:
    """Another member of the class: the same kind of picture (a disc on a plain ground) in other colours."""
    rng = np.random.default_rng(10_000 + seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = size / 2 + rng.uniform(-8, 8), size / 2 + rng.uniform(-8, 8)
    img = np.zeros((size, size, 3), np.float32)
    img[:] = rng.uniform(0, 255, 3)
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (size * rng.uniform(0.2, 0.35)) ** 2
    img[disc] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_job(
    root: Path, model: Path, *, photos: int = 5, class_images: int = 6, **plan: Any
) -> tuple[StageContext, list[Event]]:
    """A job whose prepare and class-image stages have 'run': PNGs in place, spec saved; events are collected."""
    train = dataclasses.replace(demo_plan(), **plan)
    spec = JobSpec(name="t", photos_dir=str(root / "photos"), identifier=IDENTIFIER, class_name=CLASS,
                   base_model=str(model), resolution=TINY_RESOLUTION, device="cpu", demo=True, train=train)
    paths = JobPaths(root / "job")
    save_spec(paths, spec)
    samples = paths.training_samples(CLASS)
    samples.mkdir(parents=True, exist_ok=True)
    for i in range(photos):
        subject_image(i).save(samples / f"{IDENTIFIER} {CLASS}_{i + 1:03d}.png")
    klass = paths.class_images(CLASS)
    klass.mkdir(parents=True, exist_ok=True)
    for i in range(class_images):
        class_image(i).save(klass / f"{i:04d}.png")
    events: list[Event] = []
    ctx = StageContext(spec=spec, paths=paths, workdir=root, emit=events.append, should_stop=lambda: False,
                       device=torch.device("cpu"))
    return ctx, events


def unet_weights(paths: JobPaths) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file


    return load_file(str(paths.trained / "unet.safetensors"))


def small_demo_job(workdir: Path, name: str, *, family: str | None = None, gen_steps: int = 2,
                   **train: Any) -> JobSpec:
    """The demo job as the planner makes it, trimmed for a test: `train`'s fields replaced, and a pack of one image
    per prompt plus one bare-token image drawn in `gen_steps` steps."""
    from ioncannon.engine.demo import demo_spec

    spec = demo_spec(workdir, name=name, **({"family": family} if family else {}))
    return spec.replace(
        train=dataclasses.replace(spec.train, **train),
        generate=dataclasses.replace(spec.generate, images_per_prompt=1, bare_token_images=1, steps=gen_steps),
    )
