"""TrainPlan and GeneratePlan: how a job trains and generates, chosen per family and card, frozen in job.json."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Mode = Literal["full", "lora"]
Precision = Literal["bf16", "fp16", "fp32"]
Optimizer = Literal["adamw", "adamw_fused", "adamw_bf16"]  # adamw_bf16: bf16 moments; the others fp32
BaseWeights = Literal["plain", "fp8"]  # how the frozen denoiser is stored in LoRA runs: as `precision`, or fp8


@dataclass(frozen=True)
class TrainPlan:
    """How training runs: mode, memory levers and the recipe."""

    mode: Mode = "full"
    preset: str = "recommended"
    steps: int = 800
    learning_rate: float = 2e-6
    batch_size: int = 1
    train_text_encoder: bool = False
    prior_preservation: bool = True
    prior_loss_weight: float = 1.0
    num_class_images: int = 200
    lora_rank: int = 16
    precision: Precision = "bf16"
    optimizer: Optimizer = "adamw_fused"
    gradient_checkpointing: bool = False
    base_weights: BaseWeights = "plain"
    compile: bool = True
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    sample_every: int = 200
    seed: int = 1234
    num_processes: int = 1  # GPUs used, one process each; batch_size is per process (see hardware.data_parallel)

    def checkpoint_due(self, done: int) -> bool:
        """Whether the loop writes a periodic checkpoint after step `done`: every `checkpoint_every` steps, but not
        at the end, where the trained weights are saved anyway. The one rule the loop and the estimate share."""
        return self.checkpoint_every > 0 and done % self.checkpoint_every == 0 and done < self.steps

    def checkpoints_written(self) -> int:
        """How many periodic checkpoints a run from step 0 writes (`checkpoint_due` counted over the run)."""
        return (self.steps - 1) // self.checkpoint_every if self.checkpoint_every > 0 and self.steps > 0 else 0

    def size_to_machine(self, step_s: float, target_s: float = 40.0, least: int = 40) -> TrainPlan:
        """This plan with as many steps as fit in about `target_s` seconds at `step_s` a step (never more than it
        had, never fewer than `least`), checkpoints and previews every quarter: the demo on a slow or busy box."""
        if step_s <= 0:
            return self
        steps = max(least, min(self.steps, int(target_s / step_s) // 10 * 10))
        quarter = max(1, steps // 4)
        return replace(self, steps=steps,
                       checkpoint_every=quarter if self.checkpoint_every > 0 else 0,
                       sample_every=quarter if self.sample_every > 0 else 0)


@dataclass(frozen=True)
class GeneratePlan:
    """How the prompt pack and class images are generated."""

    sampler: Literal["dpm", "ddim"] = "dpm"
    steps: int = 25
    guidance: float = 7.0
    images_per_prompt: int = 16
    batch_size: int = 16  # measured fastest on an H100 (8.2 images/s compiled) and under 5 GiB
    bare_token_images: int = 4
    prompt_pack: str = ""  # path to a TOML prompt pack; empty = the built-in pack
