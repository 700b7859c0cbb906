"""Training recipes (classic, recommended, demo) as TrainPlan values, each explained in one line."""

from __future__ import annotations

import dataclasses

from ioncannon.job.families import DEFAULT_FAMILY
from ioncannon.job.plans import TrainPlan

PRESETS: dict[str, str] = {
    "classic": (
        "The original notebook's recipe: UNet + text encoder, lr 1e-6, 1 photo + 1 class image a step, 1,000 steps."
    ),
    "recommended": (
        "UNet at lr 2e-6 for 800 steps with the text encoder frozen (its prompts are cached, so steps are faster "
        "and faces overfit less); LoRA: rank 16, lr 1e-4, 1,000 steps."
    ),
    "demo": "A tiny model on the CPU: 400 quick steps that show every stage working, not a useful model.",
}


def preset_plan(preset: str, mode: str, family: str) -> TrainPlan:
    """The recipe part of a plan; hardware.choose_plan fills in the memory levers."""
    plan = _sd15_plan(preset, mode)
    if family == DEFAULT_FAMILY or preset == "demo":  # the recipes were written for the first family
        return plan
    from ioncannon.job.families import family_info

    info = family_info(family)
    # the recipe is the same; the family sets the learning rate its weights tolerate and whether class images pay
    lr = info.lora_lr if plan.mode == "lora" else info.full_lr
    return dataclasses.replace(plan, learning_rate=lr, prior_preservation=info.prior_preservation,
                               train_text_encoder=plan.train_text_encoder and info.text_encoders_trainable)


def _sd15_plan(preset: str, mode: str) -> TrainPlan:
    if preset == "classic":
        plan = TrainPlan(preset="classic", steps=1000, learning_rate=1e-6, batch_size=1, train_text_encoder=True,
                         prior_loss_weight=1.0, num_class_images=200)
        if mode == "lora":
            plan = dataclasses.replace(plan, mode="lora", learning_rate=1e-4, lora_rank=16)
        return plan
    if preset == "demo":
        return demo_plan()
    if preset != "recommended":
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if mode == "lora":
        return TrainPlan(mode="lora", preset="recommended", steps=1000, learning_rate=1e-4, lora_rank=16,
                         num_class_images=200)
    return TrainPlan(mode="full", preset="recommended", steps=800, learning_rate=2e-6, num_class_images=200)


def demo_plan() -> TrainPlan:
    # lr is far above real recipes so the random tiny model visibly moves; 400 steps keep the
    # training screen live for a few seconds on two CPU cores
    return TrainPlan(
        mode="full", preset="demo", steps=400, learning_rate=3e-4, batch_size=1, train_text_encoder=False,
        num_class_images=8, precision="fp32", optimizer="adamw", gradient_checkpointing=False, compile=False,
        checkpoint_every=100, keep_checkpoints=2, sample_every=100,
    )


def demo_plan_for(family: str) -> TrainPlan:
    """The demo plan for a family: a LoRA-only family (Flux) trains a LoRA, at a rate that moves a tiny model."""
    from ioncannon.job.families import family_info

    plan, info = demo_plan(), family_info(family)
    if info.lora_only:
        plan = dataclasses.replace(plan, mode="lora", learning_rate=1e-3, lora_rank=4)
    return dataclasses.replace(plan, prior_preservation=plan.prior_preservation and info.prior_preservation)


def warmup_steps(plan: TrainPlan) -> int:
    """Linear learning-rate warm-up length; the classic recipe had none."""
    if plan.preset in ("classic", "demo"):
        return 0
    return min(50, plan.steps // 10)
