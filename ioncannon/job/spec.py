"""JobSpec: every choice a run needs, frozen, saved as job.json."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ioncannon.job.fsio import read_json, write_json
from ioncannon.job.paths import JobPaths

FAMILY_NAMES: tuple[str, ...] = ("sd15", "sdxl", "flux")  # job/families.py describes each
DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

Mode = Literal["full", "lora"]
Precision = Literal["bf16", "fp16", "fp32"]


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
    optimizer: str = "adamw_fused"
    gradient_checkpointing: bool = False
    compile: bool = True
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    sample_every: int = 200
    seed: int = 1234
    num_processes: int = 1  # GPUs used, one process each; batch_size is per process (see hardware.data_parallel)


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


@dataclass(frozen=True)
class JobSpec:
    """Everything a run needs. Written once by the wizard (or `ioncannon run`), read by the runner."""

    name: str
    photos_dir: str
    identifier: str
    class_name: str
    base_model: str = DEFAULT_BASE_MODEL
    family: str = "sd15"  # sd15 | sdxl | flux (job/families.py); job.json files from before families read as sd15
    resolution: int = 512
    device: str = "auto"  # auto | cuda | cpu
    hourly_price: float | None = None
    budget_money: float | None = None
    budget_minutes: float | None = None
    demo: bool = False
    crops: dict[str, str] = field(default_factory=dict)  # photo file -> "face" | "centre" | "top"
    excluded: tuple[str, ...] = ()  # photo files the user dropped on the check screen
    kept: tuple[str, ...] = ()  # photo files the doctor would drop (near-duplicates) that the user keeps
    train: TrainPlan = field(default_factory=TrainPlan)
    generate: GeneratePlan = field(default_factory=GeneratePlan)

    def __post_init__(self) -> None:
        if self.family not in FAMILY_NAMES:  # at the door, not stages later
            raise ValueError(f"unknown model family {self.family!r}; choose one of {', '.join(FAMILY_NAMES)}")

    @property
    def instance_prompt(self) -> str:
        return f"a photo of {self.identifier} {self.class_name}"

    @property
    def class_prompt(self) -> str:
        return f"a photo of {self.class_name}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        data = {k: v for k, v in data.items() if k != "schema_version"}
        train = from_known_fields(TrainPlan, data.pop("train", {}) or {})
        gen = from_known_fields(GeneratePlan, data.pop("generate", {}) or {})
        fields = _known_fields(cls, data)
        fields["excluded"] = tuple(fields.get("excluded", ()))
        fields["kept"] = tuple(fields.get("kept", ()))
        return cls(**fields, train=train, generate=gen)

    def replace(self, **changes: Any) -> JobSpec:
        return dataclasses.replace(self, **changes)


_T = TypeVar("_T")


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def from_known_fields(cls: type[_T], data: dict[str, Any]) -> _T:
    """An instance of dataclass `cls` from the keys of `data` it knows (newer files may carry more)."""
    return cls(**_known_fields(cls, data))


def slugify(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug or "job"


def save_spec(paths: JobPaths, spec: JobSpec) -> None:
    paths.ensure()
    write_json(paths.job_file, spec.to_json())


def load_spec(paths: JobPaths) -> JobSpec:
    return JobSpec.from_json(read_json(paths.job_file))
