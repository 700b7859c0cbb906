"""JobSpec: every choice a run needs, frozen, saved as job.json."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ioncannon.job.families import DEFAULT_FAMILY, FAMILY_NAMES, family_info
from ioncannon.job.fsio import StateFileError, read_json, write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import GeneratePlan, TrainPlan
from ioncannon.job.validate import (
    Range,
    SpecError,
    name_problem,
    range_problems,
    text_problem,
    typed_fields,
    word_problems,
)

DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

Device = Literal["auto", "cuda", "cpu"]
CropChoice = Literal["face", "centre", "top"]


@dataclass(frozen=True)
class JobSpec:
    """Everything a run needs. Written once by the wizard (or `ioncannon run`), read by the runner."""

    name: str
    photos_dir: str
    identifier: str
    class_name: str
    base_model: str = DEFAULT_BASE_MODEL
    family: str = DEFAULT_FAMILY  # job/families.py; job.json files from before families read as the first family
    resolution: int = 512
    device: Device = "auto"
    hourly_price: float | None = None
    budget_money: float | None = None
    budget_minutes: float | None = None
    demo: bool = False
    crops: dict[str, CropChoice] = field(default_factory=dict)  # photo file -> how its square is cut
    excluded: tuple[str, ...] = ()  # photo files the user dropped on the check screen
    kept: tuple[str, ...] = ()  # photo files the doctor would drop (near-duplicates) that the user keeps
    # CPU threads of the runner, pinned when the job is created: a resume under another OMP_NUM_THREADS
    # would otherwise sum in another order and stop being bit-exact (None: not pinned, an older job)
    threads: int | None = None
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
    def from_json(cls, data: Any, strict_keys: bool = False) -> JobSpec:
        """A spec from its JSON form, every field checked (SpecError lists each problem in one sentence).

        `strict_keys` (job files people type): an unknown key is a problem, not ignored, so a typo is caught.
        """
        problems: list[str] = []
        if not isinstance(data, dict):
            raise SpecError([f"the job is {type(data).__name__}, not a table of fields: "
                             'write { "name": ..., "photos_dir": ..., ... } (see `ioncannon run --help`).'])
        fields, found = typed_fields(cls, data, strict_keys=strict_keys, skip=("schema_version", "train", "generate"))
        problems += found
        train_data, gen_data = data.get("train", {}), data.get("generate", {})
        train, found = typed_fields(TrainPlan, train_data, "train.", strict_keys)
        problems += found
        gen, found = typed_fields(GeneratePlan, gen_data, "generate.", strict_keys)
        problems += found
        problems += _spec_rules(fields, data) + range_problems(train, TRAIN_RANGES, "train.")
        problems += range_problems(gen, GENERATE_RANGES, "generate.") + _plan_rules(train, gen)
        family = fields.get("family", DEFAULT_FAMILY)
        if family in FAMILY_NAMES and family_info(family).lora_only and train.get("mode", "full") == "full":
            problems.append(f'train.mode is "full", but {family_info(family).label} trains LoRA only here: '
                            'write "lora".')
        if problems:
            raise SpecError(problems)
        return cls(**fields, train=TrainPlan(**train), generate=GeneratePlan(**gen))

    def problems(self) -> list[str]:
        """What is wrong with this spec, one sentence each (empty when the runner can use it)."""
        try:
            JobSpec.from_json(self.to_json())
        except SpecError as exc:
            return exc.problems
        return []

    def replace(self, **changes: Any) -> JobSpec:
        return dataclasses.replace(self, **changes)


def slugify(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug or "job"


def save_spec(paths: JobPaths, spec: JobSpec) -> None:
    paths.ensure()
    write_json(paths.job_file, spec.to_json())


def load_spec(paths: JobPaths) -> JobSpec:
    """The job's spec from job.json; StateFileError (one sentence per problem) when it is damaged or edited wrong."""
    try:
        return JobSpec.from_json(read_json(paths.job_file))
    except SpecError as exc:
        raise StateFileError(f"{paths.job_file.name} is damaged: {exc}") from exc


# --------------------------------------------------------------------------- the rules beyond types

REQUIRED = {
    "name": "a job name such as zwx-portraits",
    "photos_dir": "the folder with the subject's photos",
    "identifier": "a short rare word such as zwx",
    "class_name": "what the subject is: man, woman, person, dog, cat or your own word",
}
SPEC_RANGES = {
    "resolution": Range(64, 4096, step=8, usual="512"),
    "hourly_price": Range(0, 10_000),
    "budget_money": Range(0, 1_000_000, above=True),
    "budget_minutes": Range(0, 1_000_000, above=True),
    "threads": Range(1, 1024),
}
TRAIN_RANGES = {
    "steps": Range(1, 100_000, usual="800"),
    "learning_rate": Range(0, 1, above=True, usual="2e-06"),
    "batch_size": Range(1, 64, usual="1"),
    "prior_loss_weight": Range(0, 100, usual="1.0"),
    "num_class_images": Range(0, 10_000, usual="200"),
    "lora_rank": Range(1, 1024, usual="16"),
    "checkpoint_every": Range(0, 100_000, usual="200"),  # 0: no checkpoints (benchmarks)
    "keep_checkpoints": Range(1, 100, usual="2"),
    "sample_every": Range(0, 100_000, usual="200"),
    "seed": Range(0, 2**32 - 1),
    "num_processes": Range(1, 64),
}
GENERATE_RANGES = {
    "steps": Range(1, 1000, usual="25"),
    "guidance": Range(0, 50, usual="7.0"),
    "images_per_prompt": Range(0, 1000, usual="16"),
    "batch_size": Range(1, 256, usual="16"),
    "bare_token_images": Range(0, 1000, usual="4"),
}
PRESET_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
MAX_LISTED_PHOTOS = 10_000


def _spec_rules(fields: dict[str, Any], data: dict[str, Any]) -> list[str]:
    problems = [f"{key} is missing: write {what}." for key, what in REQUIRED.items()
                if key not in fields and key not in data]
    family = fields.get("family")
    if isinstance(family, str) and family not in FAMILY_NAMES:
        problems.append(f"family {json.dumps(family)} is not a model family: write one of {', '.join(FAMILY_NAMES)}.")
    name = fields.get("name")
    if isinstance(name, str):
        problems += [p for p in [name_problem(name)] if p]
    for key in ("identifier", "class_name"):
        if isinstance(fields.get(key), str):
            problems += [f"{key}: {p}." for p in word_problems(fields[key], "identifier" if key == "identifier"
                                                                  else "class")]
    for key in ("photos_dir", "base_model"):
        if isinstance(fields.get(key), str):
            problems += [p for p in [text_problem(key, fields[key], allow_empty=False)] if p]
    listed = [*fields.get("excluded", ()), *fields.get("kept", ()), *fields.get("crops", {})]
    if len(listed) > MAX_LISTED_PHOTOS:
        problems.append(f"excluded, kept and crops list {len(listed)} photos: list at most {MAX_LISTED_PHOTOS}.")
    else:
        problems += [p for p in {text_problem("a photo in excluded, kept or crops", f, 255, False) for f in listed}
                     if p]
    return problems + range_problems(fields, SPEC_RANGES)


def _plan_rules(train: dict[str, Any], gen: dict[str, Any]) -> list[str]:
    problems = []
    preset = train.get("preset")
    if isinstance(preset, str) and not PRESET_PATTERN.fullmatch(preset):
        problems.append(f"train.preset {json.dumps(preset)} is not a preset name: write recommended or classic.")
    if train.get("prior_preservation", True) and train.get("num_class_images") == 0:
        problems.append("train.num_class_images is 0 while prior preservation is on: write a number such as 200, "
                        "or set train.prior_preservation to false.")
    pack = gen.get("prompt_pack")
    if isinstance(pack, str):
        problems += [p for p in [text_problem("generate.prompt_pack", pack)] if p]
    return problems
