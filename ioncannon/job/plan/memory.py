"""The training plan that fits the card: memory profiles of the family, GPU scaling and the leaner step after OOM."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ioncannon.job.families import PlanProfile, family_info
from ioncannon.job.plan import presets
from ioncannon.job.plan.box import GpuInfo, HardwareInfo, margin_gib, speed_factor
from ioncannon.job.plan.presets import PRESETS, preset_plan
from ioncannon.job.plans import TrainPlan

__all__ = [
    "PlanChoice", "NothingFits", "PRESETS", "choose_plan", "plan_options", "data_parallel", "scale_for_processes",
    "default_family", "step_down", "plan_key", "profile_label", "checkpoint_cadence", "DEMO_TRAIN_SECONDS",
    "DATA_PARALLEL_EFFICIENCY",
]

DEMO_TRAIN_SECONDS = 40.0
_CPU_DEMO_STEPS_PER_S = 25.0  # measured 30-37 on two idle cores
# Assumed, not yet measured: the step waits for one all-reduce of the gradients (~4 ms for SD1.5 over NVLink).
DATA_PARALLEL_EFFICIENCY = 0.85


@dataclass(frozen=True)
class PlanChoice:
    plan: TrainPlan
    label: str
    why: str
    predicted_peak_gib: float
    predicted_steps_per_s: float
    fits: bool


class NothingFits(Exception):
    """No plan fits the free GPU memory; the message says what would."""


def _profiles(family: str) -> tuple[PlanProfile, ...]:
    """The family's memory plans, fastest first within a mode (job/families.py)."""
    return family_info(family).profiles


def checkpoint_cadence(mode: str) -> int:
    """Steps between periodic checkpoints on one GPU. A full checkpoint is 5-9 GB (weights + Adam moments) and
    takes seconds to write; at ~20 steps/s, 400 steps is under half a minute of work at risk. A LoRA one is small."""
    return 400 if mode == "full" else 200


def _profile_plan(profile: PlanProfile, preset: str, family: str) -> TrainPlan:
    base = preset_plan(preset, profile.mode, family)
    return dataclasses.replace(
        base, mode=profile.mode, optimizer=profile.optimizer, gradient_checkpointing=profile.checkpointing,
        base_weights=profile.base_weights, precision="bf16", compile=True,
        checkpoint_every=checkpoint_cadence(profile.mode),
    )


def plan_key(plan: TrainPlan, family: str) -> str:
    """Which memory profile a plan uses ('full-12gb', 'lora', ...; 'demo' for CPU plans)."""
    if plan.precision == "fp32":
        return "demo"
    for p in _profiles(family):
        if (p.mode, p.optimizer, p.checkpointing, p.base_weights) == (
                plan.mode, plan.optimizer, plan.gradient_checkpointing, plan.base_weights):
            return p.key
    return "custom"


def _choice(profile: PlanProfile, preset: str, gpu: GpuInfo, family: str) -> PlanChoice:
    plan = _profile_plan(profile, preset, family)
    peak = profile.peak_gib + (profile.text_extra_gib if plan.train_text_encoder else 0.0)
    speed = profile.h100_steps_per_s * speed_factor(gpu.name) * (0.89 if plan.train_text_encoder else 1.0)
    fits = peak + margin_gib(gpu) <= gpu.free_gib
    why = (f"needs about {peak:.1f} GiB{'' if profile.measured else ' (estimated)'} + {margin_gib(gpu):.1f} GiB "
           f"headroom; {gpu.name} has {gpu.free_gib:.1f} GiB free" + ("" if fits else " — does not fit"))
    return PlanChoice(plan, profile.label, why, round(peak, 1), round(speed, 1), fits)


def plan_options(hw: HardwareInfo, demo: bool = False, *, family: str) -> list[PlanChoice]:
    """Every plan of the family for the best GPU (recommended recipe), fits true/false, for the screen's override."""
    if demo:
        return [demo_choice(hw, family)]
    gpu = hw.best_gpu
    if gpu is None:
        return [PlanChoice(_profile_plan(p, "recommended", family), p.label, "needs a CUDA GPU", p.peak_gib, 0.0, False)
                for p in _profiles(family)]
    return [_choice(p, "recommended", gpu, family) for p in _profiles(family)]


def demo_choice(hw: HardwareInfo, family: str) -> PlanChoice:
    """The tiny CPU plan, its steps sized to the box's measured step time when the probe measured one."""
    plan, speed = presets.demo_plan_for(family), _CPU_DEMO_STEPS_PER_S
    if hw.demo_step_s:  # measured on this machine: as many steps as fit the demo's training time
        plan = plan.size_to_machine(hw.demo_step_s, DEMO_TRAIN_SECONDS)
        speed = round(1 / hw.demo_step_s, 1)
    return PlanChoice(
        plan,
        "Demo (tiny model)",
        "tiny model, 64 px, fp32 on the CPU, one thread; steps sized to this machine's speed",
        0.2,
        speed,
        True,
    )


def scale_for_processes(plan: TrainPlan, n: int) -> TrainPlan:
    """The plan over `n` GPUs: the same per-GPU batch (so it fits the same), global batch n x batch, 1/n of the
    steps (the same images seen), learning rate x sqrt(n) (Adam's square-root rule for a larger batch). Previews
    and checkpoints keep their cadence in images seen, so a run that checkpointed on one GPU checkpoints on n."""
    if n <= 1:
        return plan

    def per(every: int) -> int:
        return max(1, -(-every // n)) if every > 0 else 0

    return dataclasses.replace(
        plan, num_processes=n, steps=max(1, -(-plan.steps // n)), learning_rate=plan.learning_rate * n ** 0.5,
        sample_every=per(plan.sample_every), checkpoint_every=per(plan.checkpoint_every),
    )


def data_parallel(choice: PlanChoice, hw: HardwareInfo) -> PlanChoice | None:
    """`choice` spread over every GPU it fits, one process each (data parallel); None with fewer than two."""
    if choice.plan.precision == "fp32":
        return None
    fitting = [g for g in hw.gpus if choice.predicted_peak_gib + margin_gib(g) <= g.free_gib]
    n = len(fitting)
    if n < 2 or not choice.fits:
        return None
    plan, base = scale_for_processes(choice.plan, n), choice.plan
    b = base.batch_size
    why = (f"{n} GPUs, one process each: {b} photo{'s' if b > 1 else ''}"
           f"{f' + {b} class image' + ('s' if b > 1 else '') if base.prior_preservation else ''} per GPU a step "
           f"(global batch {n * b}), {plan.steps} steps instead of {base.steps} (the same images seen), "
           f"learning rate {plan.learning_rate:.3g} = {base.learning_rate:g} x sqrt({n}); " + choice.why)
    speed = choice.predicted_steps_per_s * DATA_PARALLEL_EFFICIENCY
    return PlanChoice(plan, f"{choice.label} on {n} GPUs", why, choice.predicted_peak_gib, round(speed, 1), True)


def choose_plan(hw: HardwareInfo, preset: str = "recommended", mode: str | None = None, demo: bool = False, *,
                family: str) -> PlanChoice:
    """The fastest plan of `preset` and `family` that fits the best GPU with headroom (full fine-tune preferred).

    No GPU: a demo gets the tiny CPU plan; a real model gets fits=False ("needs a CUDA GPU").
    A GPU too small for every plan raises NothingFits with what would fit.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if demo or preset == "demo":
        return demo_choice(hw, family)
    gpu = hw.best_gpu
    info = family_info(family)
    modes = ["lora"] if info.lora_only else [mode] if mode else ["full", "lora"]
    profiles = _profiles(family)
    if gpu is None:
        profile = next(p for p in profiles if p.mode == modes[0])
        return PlanChoice(
            _profile_plan(profile, preset, family),
            profile.label,
            "needs a CUDA GPU: none is visible (check `nvidia-smi`), or run the demo",
            profile.peak_gib,
            0.0,
            False,
        )
    candidates = [_choice(p, preset, gpu, family) for p in profiles if p.mode in modes]
    for c in candidates:
        if c.fits:
            if mode is None and c.plan.mode == "lora" and not info.lora_only:
                return dataclasses.replace(
                    c, why=f"a full fine-tune does not fit {gpu.free_gib:.1f} GiB free, so LoRA; " + c.why)
            return c
    smallest = min(candidates, key=lambda c: c.predicted_peak_gib)
    raise NothingFits(
        f"{gpu.name} has {gpu.free_gib:.1f} GiB free, but the smallest plan ({smallest.label}) needs about "
        f"{smallest.predicted_peak_gib + margin_gib(gpu):.1f} GiB. Close other programs using the GPU "
        f"(`nvidia-smi` lists them) or rent a card with at least {info.min_vram_gib:.0f} GB."
    )


def default_family(hw: HardwareInfo, demo: bool = False) -> str:
    """The first family the wizard offers (the fastest, on any card) unless a family that likes a bigger card
    fits this one: SDXL where a plan of it fits a card of its class (12 GB and up), SD 1.5 otherwise."""
    from ioncannon.job.families import DEFAULT_FAMILY, PREFERRED_FAMILY

    gpu = hw.best_gpu
    preferred = family_info(PREFERRED_FAMILY)
    if demo or gpu is None or gpu.total_gib < preferred.min_vram_gib:
        return DEFAULT_FAMILY
    try:
        return PREFERRED_FAMILY if choose_plan(hw, family=PREFERRED_FAMILY).fits \
            else DEFAULT_FAMILY
    except NothingFits:
        return DEFAULT_FAMILY


def step_down(plan: TrainPlan, family: str) -> TrainPlan | None:
    """The next leaner plan of the same mode after running out of GPU memory; None when there is none."""
    key = plan_key(plan, family)
    if key == "demo":
        if plan.gradient_checkpointing:
            return None
        return dataclasses.replace(plan, gradient_checkpointing=True)
    same = [p for p in _profiles(family) if p.mode == plan.mode]
    keys = [p.key for p in same]
    idx = keys.index(key) if key in keys else -1
    if idx + 1 >= len(same):
        return None
    nxt = same[idx + 1]
    return dataclasses.replace(plan, optimizer=nxt.optimizer, gradient_checkpointing=nxt.checkpointing,
                               base_weights=nxt.base_weights)


def profile_label(plan: TrainPlan, family: str) -> str:
    key = plan_key(plan, family)
    return next((p.label for p in _profiles(family) if p.key == key),
                "Demo (tiny model)" if key == "demo" else "Custom plan")
