"""Resolves a registered stage to its function; prepare and package live here, the rest in their own rooms."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from ioncannon.engine.context import StageContext
from ioncannon.job.errors import StageError
from ioncannon.job.events import Message, Progress
from ioncannon.job.fsio import atomic_write_text
from ioncannon.job.stages import load
from ioncannon.job.stages import stage as stage_info

StageFunction = Callable[[StageContext], None]


def raw_stage_function(stage: str) -> Callable[..., None]:
    """The stage's own function, run in this process."""
    # imported only when the stage runs, so one stage's heavy imports don't slow the others
    return load(stage_info(stage).run)


def stage_function(stage: str) -> StageFunction:
    # multi-GPU hook: image and training stages run one process per GPU when the plan asks for several
    from ioncannon.engine.parallel.launch import across_processes

    return across_processes(stage, raw_stage_function(stage))


def run_prepare(ctx: StageContext) -> None:
    """Normalise the user's photos into training_samples/<class>/ (the source folder is only read)."""
    from ioncannon.engine.photos import folder as photos
    from ioncannon.job.workdir import overlap_problem

    spec = ctx.spec
    overlap = overlap_problem(ctx.paths.root, spec.photos_dir)  # job.json may have been edited since the door
    if overlap:
        raise StageError(overlap[0].upper() + overlap[1:], "Move the photos to a folder of their own, set "
                         "photos_dir in the job's .ioncannon/job.json to it, then `ioncannon resume`.")
    try:
        findings = photos.scan_folder(spec.photos_dir, resolution=spec.resolution)
    except photos.PhotoFolderError as exc:
        raise StageError(str(exc), "Check the photo folder, then resume the job.") from exc
    findings = photos.apply_choices(findings, spec.excluded, spec.kept)
    if not photos.usable(findings):
        raise StageError(
            f"No usable photos in {spec.photos_dir}.",
            "Add 5-20 JPG/PNG/HEIC photos of the subject to the folder, then resume.",
        )
    out = ctx.paths.training_samples(spec.class_name)
    try:
        written = photos.normalise(
            spec.photos_dir, findings, spec.identifier, spec.class_name, out,
            resolution=spec.resolution, crops=dict(spec.crops),
        )
    except photos.PhotoFolderError as exc:
        raise StageError(str(exc), "Move the photos to a folder of their own, then resume the job.") from exc
    n = len([f for f in written if f.output])
    ctx.emit(Progress(stage="prepare", done=n, total=n, label="photos"))
    ctx.emit(Message(level="info", text=f"{n} training photos written to {out}"))


def run_package(ctx: StageContext) -> None:
    """Write a summary of the finished job and the download instructions next to the outputs."""
    paths, spec = ctx.paths, ctx.spec
    summary = {
        "job": spec.name,
        "identifier": spec.identifier,
        "class": spec.class_name,
        "prompt": spec.instance_prompt,
        "base_model": spec.base_model,
        "mode": spec.train.mode,
        "steps": spec.train.steps,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "trained_models": sorted(p.name for p in paths.trained_models.glob("*"))
        if paths.trained_models.exists()
        else [],
        "outputs": sorted(p.name for p in paths.outputs.glob("*")) if paths.outputs.exists() else [],
    }
    atomic_write_text(paths.summary_file, json.dumps(summary, indent=2) + "\n")
    from ioncannon.rental.download import write_download_file

    write_download_file(paths, spec)
