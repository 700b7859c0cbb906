"""The one registry of a job's stages: order, how each is shown, whether it spreads over GPUs, where it runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Stage:
    """One stage, declared once; every list of stages (runner, launcher, screens, CLI) derives from these."""

    name: str
    label: str                  # short, for stage lists
    title: str                  # a sentence-like heading while it runs
    unit: str                   # what its progress counts
    run: str                    # "module:function", imported by the runner only when the stage runs
    parallel: bool = False      # one process per GPU when the plan uses several
    work_left: str = ""         # parallel stages: "module:function" counting what is left to do (0: reuse, no launch)
    finish: str = ""  # parallel stages: run once in the runner after every process is done
    step_down: str = ""  # parallel stages: switch to a leaner plan after running out of GPU memory, then relaunch
    skip: str = ""  # "module:function" saying why the stage has nothing to do this time ("" = run it)
    screen: Literal["train", "generate"] = "train"


STAGES: tuple[Stage, ...] = (
    Stage("fetch", "download", "Downloading the base model", "bytes", "ioncannon.engine.fetch:run_fetch",
          skip="ioncannon.engine.fetch:skip_fetch"),
    Stage("prepare", "photos", "Preparing the photos", "photos", "ioncannon.engine.stages:run_prepare"),
    Stage(
        "class_images",
        "class images",
        "Making class images (prior preservation)",
        "images",
        "ioncannon.engine.generate.stage:run_class_images",
        parallel=True,
        work_left="ioncannon.engine.generate.stage:class_images_missing",
        finish="ioncannon.engine.generate.stage:finish_class_images",
    ),
    Stage("cache", "cache", "Caching latents", "images", "ioncannon.engine.train.cache:run_cache"),
    Stage(
        "train",
        "train",
        "Training",
        "steps",
        "ioncannon.engine.train.loop:run_training",
        parallel=True,
        work_left="ioncannon.engine.train.loop:steps_left",
        step_down="ioncannon.engine.train.loop:step_down_after_oom",
    ),
    Stage(
        "export",
        "export",
        "Exporting the model (fp16 .safetensors and diffusers folder)",
        "files",
        "ioncannon.engine.export:run_export",
        screen="generate",
    ),
    Stage(
        "generate",
        "generate",
        "Generating the prompt pack",
        "images",
        "ioncannon.engine.generate.stage:run_generate",
        parallel=True,
        screen="generate",
        work_left="ioncannon.engine.generate.stage:pack_images_missing",
        finish="ioncannon.engine.generate.stage:finish_pack",
    ),
    Stage(
        "package", "package", "Packaging the results", "files", "ioncannon.engine.stages:run_package", screen="generate"
    ),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The stage called `name` (KeyError for an unknown name)."""
    return _BY_NAME[name]


def load(reference: str) -> Callable[..., Any]:
    """The function a "module:function" reference names, imported now (the engine's modules load lazily)."""
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def label(name: str | None) -> str:
    """A stage's short label, or the name itself for anything unknown (an old or damaged state file)."""
    known = _BY_NAME.get(name or "")
    return known.label if known else (name or "")
