"""JobSpec: every choice a run needs, frozen, saved as job.json."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ioncannon.job.families import family_info
from ioncannon.job.fsio import read_json, write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import GeneratePlan, TrainPlan

DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"


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
        family_info(self.family)  # an unknown family fails here, at the door, not stages later

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
