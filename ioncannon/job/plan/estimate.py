"""How long each stage should take, from figures measured per stage (the disk arithmetic: job/download.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ioncannon.job.families import family_info
from ioncannon.job.plan.memory import PlanChoice
from ioncannon.job.spec import JobSpec
from ioncannon.job.stages import STAGE_NAMES


@dataclass(frozen=True)
class StageEstimate:
    """One stage's expected seconds; a new stage joins the estimate as one more of these."""

    stage: str
    seconds: float


@dataclass(frozen=True)
class _Inputs:
    spec: JobSpec
    choice: PlanChoice
    styles: int  # enabled styles of the pack

    @property
    def outputs(self) -> int:
        gen = self.spec.generate
        return self.styles * gen.images_per_prompt + gen.bare_token_images

    @property
    def class_images(self) -> int:
        plan = self.spec.train
        return plan.num_class_images if plan.prior_preservation else 0

    @property
    def images_per_s(self) -> float:
        info = family_info(self.spec.family)
        # relative to an H100 running the family's roomiest plan
        factor = max(self.choice.predicted_steps_per_s / info.profiles[0].h100_steps_per_s, 0.05) \
            if info.profiles else 0.05
        return info.h100_images_per_s * factor / (self.spec.generate.steps / 25.0)


# Per-stage figures measured with `ioncannon run` on an H200 (default recipe, random-weight SD1.5 model; the
# README's e2e table): drawing starts ~8 s after its stage (model load, first batch); the cache stage took 8 s
# for 20 photo latents and 200 class images; training's start-up (load, compile, graph capture) ~65 s on a
# cold compile cache; export 7 s. Checkpoints are written in the background: about a second each in the loop.
_DRAW_START_S = 8.0
_CACHE_S_PER_IMAGE = 0.025
_TRAIN_START_COMPILED_S = 65.0
_TRAIN_START_EAGER_S = 25.0
_CHECKPOINT_STALL_S = 1.0
_EXPORT_S = 7.0


def _train_s(x: _Inputs) -> float:
    plan = x.spec.train
    speed = max(x.choice.predicted_steps_per_s, 0.1)
    start = _TRAIN_START_COMPILED_S if plan.compile else _TRAIN_START_EAGER_S
    return start + plan.steps / speed + plan.checkpoints_written() * _CHECKPOINT_STALL_S


# the base model's download: only a door that asks the hub knows its bytes (Plan.with_stage puts them in)
_GPU: Mapping[str, Callable[[_Inputs], float]] = {
    "fetch": lambda x: 0.0,
    "prepare": lambda x: 3.0,
    "class_images": lambda x: _DRAW_START_S + x.class_images / x.images_per_s if x.class_images else 1.0,
    "cache": lambda x: 3.0 + _CACHE_S_PER_IMAGE * (x.class_images + 20),
    "train": _train_s,
    "export": lambda x: _EXPORT_S,
    "generate": lambda x: _DRAW_START_S + x.outputs / x.images_per_s,
    "package": lambda x: 1.0,
}
# the tiny demo on the CPU: measured on 2 cores
_DEMO: Mapping[str, Callable[[_Inputs], float]] = {
    "fetch": lambda x: 0.0,
    "prepare": lambda x: 1.0,
    "class_images": lambda x: 3.0 + 0.05 * x.class_images,
    "cache": lambda x: 2.0,
    "train": lambda x: 5.0 + x.spec.train.steps / max(x.choice.predicted_steps_per_s, 0.1),
    "export": lambda x: 2.0,
    "generate": lambda x: 2.0 + 0.05 * x.outputs,
    "package": lambda x: 0.0,
}
ESTIMATED_STAGES: frozenset[str] = frozenset(_GPU) & frozenset(_DEMO)


def estimate_stages(spec: JobSpec, choice: PlanChoice, styles: int) -> tuple[StageEstimate, ...]:
    """Seconds each stage of the registry should take (the whole job is their sum), in the stages' order."""
    table = _DEMO if spec.train.precision == "fp32" else _GPU
    inputs = _Inputs(spec, choice, styles)
    return tuple(StageEstimate(name, round(table[name](inputs), 1)) for name in STAGE_NAMES if name in table)


def as_seconds(estimate: tuple[StageEstimate, ...]) -> dict[str, float]:
    """The estimate as stage -> seconds, as the job keeps it for the finish screen."""
    return {e.stage: e.seconds for e in estimate}
