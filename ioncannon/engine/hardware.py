"""Probe the GPU, RAM and disk, and pick the training plan that fits the card."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ioncannon.job import presets
from ioncannon.job.families import PlanProfile, family_info
from ioncannon.job.fsio import free_bytes
from ioncannon.job.plans import TrainPlan
from ioncannon.job.presets import PRESETS, preset_plan

if TYPE_CHECKING:
    from ioncannon.job.spec import JobSpec

__all__ = [
    "GpuInfo", "HardwareInfo", "PlanChoice", "NothingFits", "PRESETS", "probe", "choose_plan", "plan_options",
    "estimate_seconds", "estimate_stages", "estimate_for",
    "step_down", "plan_key", "data_parallel", "scale_for_processes", "default_family",
]


@dataclass
class GpuInfo:
    index: int
    name: str
    total_gib: float
    free_gib: float


@dataclass
class HardwareInfo:
    gpus: list[GpuInfo]
    disk_free_gib: float
    cpu_count: int
    ram_gib: float
    demo_step_s: float | None = None  # a tiny-model training step measured on this machine (the demo only)

    @property
    def best_gpu(self) -> GpuInfo | None:
        return max(self.gpus, key=lambda g: g.free_gib) if self.gpus else None


@dataclass
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


# Rough bf16 training speed relative to an H100 SXM, by GPU name.
_GPU_SPEED: tuple[tuple[str, float], ...] = (
    ("H200", 1.05), ("H100", 1.0), ("GH200", 1.0), ("B200", 1.6), ("A100", 0.5), ("L40", 0.45), ("4090", 0.45),
    ("A6000", 0.3), ("3090", 0.3), ("A10", 0.2), ("4080", 0.35), ("4070", 0.22), ("L4", 0.15), ("3080", 0.25),
    ("3060", 0.12), ("V100", 0.15), ("T4", 0.06),
)
_CPU_DEMO_STEPS_PER_S = 25.0  # measured 30-37 on two idle cores


def _gib(n: float) -> float:
    return round(n / 2**30, 2)


def probe(workdir: str | Path, demo: bool = False) -> HardwareInfo:
    """What this machine has: GPUs with free memory, free disk under `workdir`, CPUs and RAM; for the demo, how long
    a tiny training step takes here now. Never raises."""
    gpus: list[GpuInfo] = []
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                gpus.append(GpuInfo(i, torch.cuda.get_device_name(i), _gib(total), _gib(free)))
    except Exception:
        gpus = []
    try:
        disk = _gib(free_bytes(workdir))
    except Exception:
        disk = 0.0
    try:
        ram = _gib(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        ram = 0.0
    step_s = None
    if demo:
        try:
            from ioncannon.engine.demo import measure_step_s

            step_s = measure_step_s()
        except Exception:
            step_s = None
    return HardwareInfo(gpus=gpus, disk_free_gib=disk, cpu_count=os.cpu_count() or 1, ram_gib=ram,
                        demo_step_s=step_s)


def _speed_factor(name: str) -> float:
    for needle, factor in _GPU_SPEED:
        if needle.lower() in name.lower():
            return factor
    return 0.3


def _margin_gib(gpu: GpuInfo) -> float:
    # CUDA context, fragmentation and the preview decode need headroom beyond the training peak
    return max(1.0, 0.06 * gpu.total_gib)


def _profile_plan(profile: PlanProfile, preset: str, family: str = "sd15") -> TrainPlan:
    base = preset_plan(preset, profile.mode, family)
    # a full checkpoint is 5-9 GB (weights + Adam moments) and takes seconds to write; at ~20 steps/s, 400 steps
    # is under half a minute of work at risk
    return dataclasses.replace(
        base, mode=profile.mode, optimizer=profile.optimizer, gradient_checkpointing=profile.checkpointing,
        base_weights=profile.base_weights, precision="bf16", compile=True,
        checkpoint_every=400 if profile.mode == "full" else 200,
    )


def plan_key(plan: TrainPlan, family: str = "sd15") -> str:
    """Which memory profile a plan uses ('full-12gb', 'lora', ...; 'demo' for CPU plans)."""
    if plan.precision == "fp32":
        return "demo"
    for p in _profiles(family):
        if (p.mode, p.optimizer, p.checkpointing, p.base_weights) == (
                plan.mode, plan.optimizer, plan.gradient_checkpointing, plan.base_weights):
            return p.key
    return "custom"


def _choice(profile: PlanProfile, preset: str, gpu: GpuInfo, family: str = "sd15") -> PlanChoice:
    plan = _profile_plan(profile, preset, family)
    peak = profile.peak_gib + (profile.text_extra_gib if plan.train_text_encoder else 0.0)
    speed = profile.h100_steps_per_s * _speed_factor(gpu.name) * (0.89 if plan.train_text_encoder else 1.0)
    fits = peak + _margin_gib(gpu) <= gpu.free_gib
    why = (f"needs about {peak:.1f} GiB{'' if profile.measured else ' (estimated)'} + {_margin_gib(gpu):.1f} GiB "
           f"headroom; {gpu.name} has {gpu.free_gib:.1f} GiB free" + ("" if fits else " — does not fit"))
    return PlanChoice(plan, profile.label, why, round(peak, 1), round(speed, 1), fits)


def plan_options(hw: HardwareInfo, demo: bool = False, family: str = "sd15") -> list[PlanChoice]:
    """Every plan of the family for the best GPU (recommended recipe), fits true/false, for the screen's override."""
    if demo:
        return [_demo_choice(hw, family)]
    gpu = hw.best_gpu
    if gpu is None:
        return [PlanChoice(_profile_plan(p, "recommended", family), p.label, "needs a CUDA GPU", p.peak_gib, 0.0, False)
                for p in _profiles(family)]
    return [_choice(p, "recommended", gpu, family) for p in _profiles(family)]


def _demo_choice(hw: HardwareInfo, family: str = "sd15") -> PlanChoice:
    plan, speed = presets.demo_plan_for(family), _CPU_DEMO_STEPS_PER_S
    if hw.demo_step_s:  # measured on this machine: as many steps as fit the demo's training time
        from ioncannon.engine.demo import DEMO_TRAIN_SECONDS

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


# Assumed, not yet measured: the step waits for one all-reduce of the gradients (~4 ms for SD1.5 over NVLink).
_DATA_PARALLEL_EFFICIENCY = 0.85


def scale_for_processes(plan: TrainPlan, n: int) -> TrainPlan:
    """The plan over `n` GPUs: the same per-GPU batch (so it fits the same), global batch n x batch, 1/n of the
    steps (the same images seen), learning rate x sqrt(n) (Adam's square-root rule for a larger batch)."""
    if n <= 1:
        return plan
    return dataclasses.replace(
        plan, num_processes=n, steps=max(1, -(-plan.steps // n)), learning_rate=plan.learning_rate * n ** 0.5,
        sample_every=max(1, -(-plan.sample_every // n)) if plan.sample_every > 0 else 0,
    )


def data_parallel(choice: PlanChoice, hw: HardwareInfo) -> PlanChoice | None:
    """`choice` spread over every GPU it fits, one process each (data parallel); None with fewer than two."""
    if choice.plan.precision == "fp32":
        return None
    fitting = [g for g in hw.gpus if choice.predicted_peak_gib + _margin_gib(g) <= g.free_gib]
    n = len(fitting)
    if n < 2 or not choice.fits:
        return None
    plan, base = scale_for_processes(choice.plan, n), choice.plan
    b = base.batch_size
    why = (f"{n} GPUs, one process each: {b} photo{'s' if b > 1 else ''}"
           f"{f' + {b} class image' + ('s' if b > 1 else '') if base.prior_preservation else ''} per GPU a step "
           f"(global batch {n * b}), {plan.steps} steps instead of {base.steps} (the same images seen), "
           f"learning rate {plan.learning_rate:.3g} = {base.learning_rate:g} x sqrt({n}); " + choice.why)
    speed = choice.predicted_steps_per_s * _DATA_PARALLEL_EFFICIENCY
    return PlanChoice(plan, f"{choice.label} on {n} GPUs", why, choice.predicted_peak_gib, round(speed, 1), True)


def choose_plan(hw: HardwareInfo, preset: str = "recommended", mode: str | None = None, demo: bool = False,
                family: str = "sd15") -> PlanChoice:
    """The fastest plan of `preset` and `family` that fits the best GPU with headroom (full fine-tune preferred).

    No GPU: a demo gets the tiny CPU plan; a real model gets fits=False ("needs a CUDA GPU").
    A GPU too small for every plan raises NothingFits with what would fit.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if demo or preset == "demo":
        return _demo_choice(hw, family)
    gpu = hw.best_gpu
    modes = [mode] if mode else ["full", "lora"]
    profiles = _profiles(family)
    if family_info(family).lora_only:
        modes = ["lora"]
    if gpu is None:
        profile = next(p for p in profiles if p.mode == modes[0])
        plan = _profile_plan(profile, preset, family)
        return PlanChoice(
            plan,
            profile.label,
            "needs a CUDA GPU: none is visible (check `nvidia-smi`), or run the demo",
            profile.peak_gib,
            0.0,
            False,
        )
    candidates = [_choice(p, preset, gpu, family) for p in profiles if p.mode in modes]
    for c in candidates:
        if c.fits:
            if mode is None and c.plan.mode == "lora" and not family_info(family).lora_only:
                c.why = f"a full fine-tune does not fit {gpu.free_gib:.1f} GiB free, so LoRA; " + c.why
            return c
    smallest = min(candidates, key=lambda c: c.predicted_peak_gib)
    raise NothingFits(
        f"{gpu.name} has {gpu.free_gib:.1f} GiB free, but the smallest plan ({smallest.label}) needs about "
        f"{smallest.predicted_peak_gib + _margin_gib(gpu):.1f} GiB. Close other programs using the GPU "
        f"(`nvidia-smi` lists them) or rent a card with at least {family_info(family).min_vram_gib:.0f} GB."
    )


def default_family(hw: HardwareInfo, demo: bool = False) -> str:
    """SDXL where a plan of it fits a card of its class (12 GB and up), SD 1.5 otherwise (and for the CPU demo)."""
    gpu = hw.best_gpu
    sdxl = family_info("sdxl")
    if demo or gpu is None or gpu.total_gib < sdxl.min_vram_gib:
        return "sd15"
    try:
        return "sdxl" if choose_plan(hw, family="sdxl").fits else "sd15"
    except NothingFits:
        return "sd15"


def step_down(plan: TrainPlan, family: str = "sd15") -> TrainPlan | None:
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


def profile_label(plan: TrainPlan, family: str = "sd15") -> str:
    key = plan_key(plan, family)
    return next((p.label for p in _profiles(family) if p.key == key),
                "Demo (tiny model)" if key == "demo" else "Custom plan")


def _enabled_styles(pack: str) -> int:
    """How many prompts the job will render (the pack the user edited, else the built-in one)."""
    from ioncannon.job.prompts import PromptPackError, load_pack

    try:
        return sum(1 for style in load_pack(pack or None) if style.enabled)
    except (PromptPackError, OSError):
        return 12  # an unreadable pack fails later with its own message; estimate a typical one


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


def estimate_stages(spec: JobSpec, choice: PlanChoice, fetch_s: float = 0.0) -> dict[str, float]:
    """Seconds each stage should take, from the figures measured per stage (the whole job is their sum);
    `fetch_s`: the base model's download (job/download.py: its bytes at the measured or assumed rate)."""
    plan = choice.plan
    gen = spec.generate
    n_outputs = _enabled_styles(gen.prompt_pack) * gen.images_per_prompt + gen.bare_token_images
    class_images = plan.num_class_images if plan.prior_preservation else 0
    speed = max(choice.predicted_steps_per_s, 0.1)
    if plan.precision == "fp32":  # the tiny demo: measured on 2 CPU cores
        return {"fetch": fetch_s, "prepare": 1.0, "class_images": 3.0 + 0.05 * class_images, "cache": 2.0,
                "train": 5.0 + plan.steps / speed, "export": 2.0, "generate": 2.0 + 0.05 * n_outputs,
                "package": 0.0}
    info = family_info(spec.family)
    # relative to an H100 running the family's roomiest plan
    factor = max(choice.predicted_steps_per_s / info.profiles[0].h100_steps_per_s, 0.05) if info.profiles else 0.05
    images_per_s = info.h100_images_per_s * factor / (gen.steps / 25.0)
    checkpoints = plan.steps // plan.checkpoint_every if plan.checkpoint_every > 0 else 0
    start = _TRAIN_START_COMPILED_S if plan.compile else _TRAIN_START_EAGER_S
    return {
        "fetch": fetch_s,
        "prepare": 3.0,
        "class_images": _DRAW_START_S + class_images / images_per_s if class_images else 1.0,
        "cache": 3.0 + _CACHE_S_PER_IMAGE * (class_images + 20),
        "train": start + plan.steps / speed + checkpoints * _CHECKPOINT_STALL_S,
        "export": _EXPORT_S,
        "generate": _DRAW_START_S + n_outputs / images_per_s,
        "package": 1.0,
    }


def estimate_for(spec: JobSpec, hw: HardwareInfo, fetch_s: float = 0.0) -> dict[str, float]:
    """Per-stage estimate of a job whose plan is already chosen (a job file, the headless demo) on this machine."""
    family = spec.family
    key = plan_key(spec.train, family)
    options = plan_options(hw, spec.demo, family)
    speed = next((c.predicted_steps_per_s for c in options if plan_key(c.plan, family) == key),
                 options[0].predicted_steps_per_s if options else 0.0)
    if spec.train.num_processes > 1:
        speed *= spec.train.num_processes * _DATA_PARALLEL_EFFICIENCY
    return estimate_stages(spec, PlanChoice(spec.train, "", "", 0.0, speed, True), fetch_s)


def estimate_seconds(spec: JobSpec, choice: PlanChoice) -> float:
    """Whole job, roughly: the sum of the per-stage estimates."""
    return sum(estimate_stages(spec, choice).values())
