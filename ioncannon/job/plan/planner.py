"""plan_job: the one answer to "what job runs?" for the wizard, `ioncannon run` and the demo alike."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ioncannon.job.families import DEFAULT_FAMILY, FAMILIES, FAMILY_NAMES, detect_family, family_info
from ioncannon.job.plan import checks, demo
from ioncannon.job.plan.box import HardwareInfo
from ioncannon.job.plan.demo import DEMO_RESOLUTION, DEMO_THREADS
from ioncannon.job.plan.estimate import StageEstimate, as_seconds, estimate_stages
from ioncannon.job.plan.memory import (
    DATA_PARALLEL_EFFICIENCY,
    NothingFits,
    PlanChoice,
    choose_plan,
    data_parallel,
    default_family,
    demo_choice,
    plan_key,
    plan_options,
)
from ioncannon.job.plan.presets import preset_plan
from ioncannon.job.plan.request import JobRequest
from ioncannon.job.spec import JobSpec
from ioncannon.job.validate import SpecError


@dataclass(frozen=True)
class Plan:
    """Everything that decides the job: the spec as it will run, the memory plan and its options, the estimate.
    (Whether the base model can be had and the disk holds it and the job's files is the model door's question:
    engine/hub_files.door_check, with job/download.py's arithmetic.)"""

    spec: JobSpec
    choice: PlanChoice  # what runs: `single`, or `parallel` when all GPUs were asked for
    single: PlanChoice  # on one GPU
    parallel: PlanChoice | None  # `single` over every GPU it fits; None on 0-1 GPU
    options: tuple[PlanChoice, ...]  # every plan of the family on this box, for the other mode's line
    estimate: tuple[StageEstimate, ...]

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.estimate)

    def stage_seconds(self) -> dict[str, float]:
        return as_seconds(self.estimate)

    def with_stage(self, stage: str, seconds: float) -> Plan:
        """This plan with one stage's estimate replaced: what only a door can measure (the download over the
        network) joins the estimate without changing its shape."""
        estimate = tuple(StageEstimate(e.stage, round(seconds, 1)) if e.stage == stage else e for e in self.estimate)
        return dataclasses.replace(self, estimate=estimate)

    def summary(self) -> str:
        """The job in a few lines, as `ioncannon run` prints it before anything starts."""
        spec = self.spec
        t, g = spec.train, spec.generate
        prior = f"on ({t.num_class_images} class images)" if t.prior_preservation else "off (no class images)"
        return "\n".join([
            f"job        {spec.name}{'  (demo: tiny random-weight model)' if spec.demo else ''}",
            f"photos     {spec.photos_dir}",
            f"subject    {spec.identifier} {spec.class_name}  -> prompt: \"{spec.instance_prompt}\"",
            f"base model {spec.base_model} ({spec.family}, {spec.resolution} px)",
            f"training   {t.mode}, {t.steps} steps, lr {t.learning_rate:g}, {t.precision}, prior preservation {prior}",
            f"generation {family_info(spec.family).own_sampler or g.sampler} {g.steps} steps, guidance "
            f"{g.guidance:g}, {g.images_per_prompt} per prompt",
        ])


@dataclass(frozen=True)
class Problems:
    """Why the job can't start, one sentence each; `plan` is the job as it would be when only the checks failed."""

    sentences: tuple[str, ...]
    family: str
    resolution: int
    base_model: str
    plan: Plan | None = None
    refusal: str = ""  # no plan fits this box (or it has no GPU): what would

    def error(self, where: str = "") -> SpecError:
        return SpecError(list(self.sentences), where)


def decide_family(request: JobRequest, box: HardwareInfo) -> str:
    """The asked family; else the base model's own (read from its files, or a family's default model); else the
    family that fits the card. A named model of unknown family keeps the first family, as job files always did."""
    if request.family is not None:
        return request.family
    model = request.base_model.strip()
    if model and request.model_names_family:
        found = detect_family(model)
        if found is not None:
            return found
        return next((f.name for f in FAMILIES.values() if f.default_model == model), DEFAULT_FAMILY)
    return default_family(box, request.demo)


def decide_size(request: JobRequest, box: HardwareInfo) -> tuple[str, int]:
    """The family and training size `plan_job` takes for `request` (the wizard's photo check scans at this size)."""
    family = decide_family(request, box)
    info = family_info(family if family in FAMILY_NAMES else DEFAULT_FAMILY)
    if request.demo:
        return info.name, DEMO_RESOLUTION
    return info.name, request.resolution if request.resolution in info.resolutions else info.default_resolution


def plan_job(request: JobRequest, box: HardwareInfo) -> Plan | Problems:
    """What job runs for `request` on `box`, or every reason it can't, one sentence each (nothing is written)."""
    family = decide_family(request, box)
    if family not in FAMILY_NAMES:
        return Problems((f'family "{family}" is not a model family: write one of {", ".join(FAMILY_NAMES)}.',),
                        DEFAULT_FAMILY, family_info(DEFAULT_FAMILY).default_resolution, request.base_model)
    info = family_info(family)
    resolution = DEMO_RESOLUTION if request.demo else \
        request.resolution if request.resolution is not None else info.default_resolution
    base_model = request.base_model.strip() or info.default_model
    try:
        single = _memory_plan(request, box, family)
    except NothingFits as exc:
        return Problems((str(exc),), family, resolution, base_model, refusal=str(exc))
    parallel = data_parallel(single, box) if request.train is None else None
    choice = parallel if request.all_gpus and parallel is not None else single
    data: dict[str, Any] = {
        **({"threads": DEMO_THREADS, "device": "cpu", "demo": True} if request.demo else {}),
        "family": family, "resolution": resolution, "base_model": base_model,
        "train": {**dataclasses.asdict(choice.plan), **(request.train or {})},
        "generate": {**dataclasses.asdict(_generate_plan(request, family)), **request.generate},
        **request.answers,  # last: a field of the wrong type that the door could not read is named by the check
    }
    try:
        spec = JobSpec.from_json(data, strict_keys=bool(request.source))
    except SpecError as exc:
        return Problems(tuple(exc.problems), family, resolution, base_model)
    if request.train is not None:  # the file's own recipe: its speed is that of the matching profile
        choice = _written_choice(spec, box)
        single = choice
    problems, styles = checks.door_problems(spec, request.workdir, request.pack_follows, request.styles)
    plan = Plan(spec, choice, single, parallel, tuple(plan_options(box, request.demo, family=family)),
                estimate_stages(spec, choice, styles) if choice.fits else ())
    if not choice.fits:
        return Problems(tuple(checks.gpu_problems(spec, box) + problems) or (choice.why,),
                        family, resolution, base_model, plan, refusal=choice.why)
    problems += checks.gpu_problems(spec, box)
    if problems:
        return Problems(tuple(problems), family, resolution, base_model, plan)
    return plan


def _memory_plan(request: JobRequest, box: HardwareInfo, family: str) -> PlanChoice:
    """The plan that fits the card; the tiny CPU plan for the demo and CPU jobs; a written recipe as it is."""
    if request.demo:
        return demo_choice(box, family)
    if request.train is not None:  # the recipe of the table's preset and mode, the table's fields over it
        info = family_info(family)
        mode = request.train.get("mode")
        mode = mode if mode in ("full", "lora") else "lora" if info.lora_only else "full"
        preset = request.train.get("preset")
        preset = preset if preset in ("recommended", "classic") else request.preset
        return PlanChoice(preset_plan(preset, mode, family), "", "", 0.0, 0.0, True)
    if request.answers.get("device") == "cpu":
        return demo_choice(box, family)
    return choose_plan(box, request.preset, request.mode, family=family)


def _written_choice(spec: JobSpec, box: HardwareInfo) -> PlanChoice:
    """A job file's own plan, with the speed of the profile it matches (for the estimate)."""
    family, plan = spec.family, spec.train
    options = plan_options(box, spec.demo, family=family)
    key = plan_key(plan, family)
    speed = next((c.predicted_steps_per_s for c in options if plan_key(c.plan, family) == key),
                 options[0].predicted_steps_per_s if options else 0.0)
    if plan.num_processes > 1:
        speed *= plan.num_processes * DATA_PARALLEL_EFFICIENCY
    return PlanChoice(plan, "", "", 0.0, speed, True)


def _generate_plan(request: JobRequest, family: str) -> Any:
    info = family_info(family)
    if request.demo:  # the family's guidance: Flux takes it as an input of the model, where 3.5 is its own value
        return dataclasses.replace(demo.DEMO_GENERATE_PLAN, guidance=info.generate.guidance)
    return info.generate

