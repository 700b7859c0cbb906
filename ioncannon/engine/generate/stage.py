"""Stages that draw images: prior-preservation class images (cached across jobs) and the prompt pack."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ioncannon.engine.attention import use_for_stage as use_attention
from ioncannon.engine.compile_cache import compile_root, warm_marker
from ioncannon.engine.context import StageContext
from ioncannon.engine.families import family_for
from ioncannon.engine.generate.batches import fixed_batches, render, shard
from ioncannon.engine.generate.collage import make_collage
from ioncannon.engine.generate.sampler import ImageSampler
from ioncannon.engine.models.load import Components, ModelLoadError, release
from ioncannon.engine.parallel.collectives import image_shard
from ioncannon.engine.weights.adapters import merge_adapters
from ioncannon.job.errors import StageError
from ioncannon.job.events import CollageReady, Message, Progress, SampleReady
from ioncannon.job.families import SamplerSpeeds, family_info
from ioncannon.job.fsio import write_json
from ioncannon.job.outputs import ImageJob, OutputSet, plan_outputs

CLASS_SEED = 20_000          # class image i uses seed CLASS_SEED + i, so a top-up continues the same series
CONTACT_COLUMNS = 4
# Keeping the class-image sampler on the GPU through caching and training, for the pack to reuse, needs room
# beside the training peak (14 GiB for the roomiest SD 1.5 plan).
SHARE_SAMPLER_MIN_GIB = 40.0
SAMPLER_KEY = "image-sampler"


# --------------------------------------------------------------------------- shared


def compile_scope(device: torch.device, images: int, cache_warm: bool, speeds: SamplerSpeeds) -> str:
    """What to compile for a run of `images` on CUDA: "" (nothing), "blocks" (the repeated blocks one by one) or
    "model" (the whole denoiser), whichever the family's measured speeds say makes the run quickest, start-up
    included (`SamplerSpeeds.quickest`). IONCANNON_COMPILE=0 turns compiling off, =1 compiles the whole model."""
    if device.type != "cuda":
        return ""
    forced = os.environ.get("IONCANNON_COMPILE", "")
    if forced in ("0", "1"):
        return "model" if forced == "1" else ""
    return speeds.quickest(images, cache_warm)


def _compile_marker(ctx: StageContext, parts: Components) -> Path:
    """A file that says kernels of the whole compiled UNet for this shape, batch, resolution and dtype are in the
    compile cache."""
    return warm_marker(compile_root(ctx.shared_cache), {
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "",
        "unet": dict(parts.unet.config), "batch": ctx.spec.generate.batch_size, "resolution": ctx.spec.resolution,
        "dtype": str(ctx.dtype),
    })


def frozen_weights(ctx: StageContext) -> str:
    """How the job's plan stores the base model's frozen weights; generation on its card stores them the same."""
    train = ctx.spec.train
    return train.base_weights if train.mode == "lora" else "plain"


def make_sampler(ctx: StageContext, parts: Components, images: int,
                 costs: dict[str, float] | None = None) -> ImageSampler:
    """The fast sampler for this job; the UNet and VAE are compiled only when that saves time. `costs` gets the
    seconds of its attention test, its set-up (weights placed on the card) and its compile."""
    plan = ctx.spec.generate
    family = family_for(parts.family)
    costs = {} if costs is None else costs
    t = time.perf_counter()
    use_attention(ctx, family.attention_shapes(parts, ctx.spec.resolution, batch=plan.batch_size),
                  family.attention_dtype(ctx.dtype), backward=False, left_out=family.attention_left_out(False))
    costs["attention test"] = time.perf_counter() - t
    t = time.perf_counter()
    marker = _compile_marker(ctx, parts)
    scope = compile_scope(ctx.device, images, marker.exists(), family.info.sampler_speeds)
    sampler = ImageSampler(
        parts, ctx.device, ctx.dtype,
        sampler=plan.sampler, steps=plan.steps, guidance=plan.guidance, resolution=ctx.spec.resolution,
        batch_size=plan.batch_size, compile_scope=scope,
        compile_cache=compile_root(ctx.shared_cache), frozen_weights=frozen_weights(ctx),
    )
    costs["sampler set-up"] = time.perf_counter() - t
    if sampler.compiled:
        what = "the UNet's repeated blocks" if scope == "blocks" else "the UNet"
        ctx.log.info("compiling %s and the VAE decoder for %d images (whole-UNet cache warm: %s)", what, images,
                     marker.exists())
        seconds = sampler.warm_up()
        costs["compile"] = seconds
        ctx.log.info("compiled in %.1f s", seconds)
        if scope == "model":
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    else:
        ctx.log.info("sampling eagerly: compiling would cost more than it saves on %d images", images)
    return sampler


def log_costs(ctx: StageContext, stage: str, costs: dict[str, float], sampler: ImageSampler, total: float) -> None:
    """One runner.log line: where a drawing stage's time went (what it measured, the sampler's own parts, and the
    rest: PNG writes waited for, progress, collages)."""
    parts = {**costs, **sampler.timings}
    parts["other"] = max(0.0, total - sum(parts.values()))
    ctx.log.info("%s took %.1f s: %s", stage, total, ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()))


def _shares_sampler(ctx: StageContext) -> bool:
    """Whether class images and the prompt pack can run on one sampler: one process runs both (one GPU), and
    the card has room to keep it beside training."""
    if ctx.device.type != "cuda" or max(1, ctx.spec.train.num_processes) > 1 or image_shard()[1] > 1:
        return False
    total = torch.cuda.get_device_properties(ctx.device).total_memory / 2**30
    return total >= SHARE_SAMPLER_MIN_GIB


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link a cached image into the job (a copy across filesystems), atomically."""
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


# --------------------------------------------------------------------------- class images


def _model_identity(source: str) -> str:
    """The base model as a cache key: a hub id as is, a local path resolved and stamped with its mtime."""
    path = Path(source).expanduser()
    if path.exists():
        stamp = path / "model_index.json" if path.is_dir() else path
        mtime = stamp.stat().st_mtime_ns if stamp.exists() else 0
        return f"{path.resolve()}@{mtime}"
    return source


def class_cache_dir(ctx: StageContext) -> Path:
    """Shared folder of class images for (base model, class, resolution, sampler); one file per image."""
    spec = ctx.spec
    plan = spec.generate
    key = {
        "model": _model_identity(spec.base_model), "prompt": spec.class_prompt, "resolution": spec.resolution,
        **({"family": spec.family} if family_info(spec.family).names_its_caches else {}),
        "sampler": f"{plan.sampler}-{plan.steps}-{plan.guidance:g}",
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = ctx.shared_cache / "class_images" / digest
    if not (folder / "key.json").exists():
        write_json(folder / "key.json", key)
    return folder


def _class_jobs(ctx: StageContext) -> list[ImageJob]:
    cache = class_cache_dir(ctx)
    return [ImageJob(cache / f"{i:04d}.png", ctx.spec.class_prompt, "", CLASS_SEED + i)
            for i in range(ctx.spec.train.num_class_images)]


def class_images_missing(ctx: StageContext) -> int:
    """How many class images neither the job nor the shared cache has yet (0 without prior preservation)."""
    if not ctx.spec.train.prior_preservation:
        return 0
    job_dir = ctx.paths.class_images(ctx.spec.class_name)
    return sum(1 for j in _class_jobs(ctx) if not j.path.exists() and not (job_dir / j.path.name).exists())


def _link_ready(job_dir: Path, batch: list[ImageJob]) -> None:
    for job in batch:
        target = job_dir / job.path.name
        if job.path.exists() and not target.exists():
            _link_or_copy(job.path, target)


def run_class_images(ctx: StageContext) -> None:
    """Give the job `num_class_images` images of its class, reusing and topping up the shared cache."""
    spec = ctx.spec
    if not spec.train.prior_preservation:
        ctx.emit(Message(level="info", text="Prior preservation is off: no class images needed."))
        return
    count = spec.train.num_class_images
    job_dir = ctx.paths.class_images(spec.class_name)
    job_dir.mkdir(parents=True, exist_ok=True)
    cache = class_cache_dir(ctx)
    names = [f"{i:04d}.png" for i in range(count)]

    def link_ready(batch: list[ImageJob]) -> None:
        _link_ready(job_dir, batch)

    cached = _class_jobs(ctx)
    link_ready(cached)
    missing = [j for j in cached if not (job_dir / j.path.name).exists()]
    have = count - len(missing)
    if not missing:
        ctx.emit(Progress(stage="class_images", done=count, total=count, label=spec.class_name))
        ctx.emit(Message(level="info", text=f"All {count} class images of '{spec.class_name}' came from the cache."))
        return
    if have:
        ctx.emit(Message(level="info", text=f"{have} class images reused from the cache; making {len(missing)} more."))
    ctx.log.info("class images: %d cached, %d to make in %s", have, len(missing), cache)
    rank, world = image_shard()  # several GPUs: this process makes every world-th batch
    batches = shard(fixed_batches(missing, spec.generate.batch_size), rank, world)
    if not batches:
        return

    started = time.perf_counter()
    try:
        parts = family_for(spec.family).load(spec.base_model, dtype=ctx.dtype)
    except ModelLoadError as exc:
        raise StageError(
            str(exc), "Class images are drawn by the base model; fix the model source and resume."
        ) from exc
    costs = {"load": time.perf_counter() - started}
    share = _shares_sampler(ctx)
    # a sampler the pack will reuse is compiled when both runs together repay it
    images = sum(len(b) for b in batches) + (pack_images_missing(ctx) if share else 0)
    sampler = make_sampler(ctx, parts, images, costs)
    kept = False
    try:
        render(
            sampler,
            batches,
            stage="class_images",
            emit=ctx.emit,
            check_stop=ctx.check_stop,
            announce=False,
            on_batch_written=link_ready,
            already_done=have if rank == 0 else 0,
        )
        log_costs(ctx, "the class images", costs, sampler, time.perf_counter() - started)
        if share and sampler.compiled:
            ctx.hold(SAMPLER_KEY, sampler)
            kept = True
            ctx.log.info("keeping the compiled sampler for the prompt pack")
    finally:
        del sampler, parts
        if not kept:
            release(ctx.device)
    if world == 1:
        ctx.emit(SampleReady(stage="class_images", path=str(job_dir / names[0]), label=spec.class_name))


def finish_class_images(ctx: StageContext) -> None:
    """After every shard finished: link all class images into the job and show the first one."""
    spec = ctx.spec
    job_dir = ctx.paths.class_images(spec.class_name)
    jobs = _class_jobs(ctx)
    _link_ready(job_dir, jobs)
    lacking = [j.path.name for j in jobs if not (job_dir / j.path.name).exists()]
    if lacking:
        raise StageError(f"{len(lacking)} class images are missing after generation (e.g. {lacking[0]}).",
                         "Resume the job: the class-image stage makes only the missing ones.")
    ctx.emit(Progress(stage="class_images", done=len(jobs), total=len(jobs), label=spec.class_name))
    if jobs:
        ctx.emit(SampleReady(stage="class_images", path=str(job_dir / jobs[0].path.name), label=spec.class_name))


# --------------------------------------------------------------------------- prompt pack


def write_collage(ctx: StageContext, output: OutputSet) -> None:
    title = f"{ctx.spec.identifier} {ctx.spec.class_name} · {output.keyword}"
    make_collage([j.path for j in output.jobs], output.collage, title=title)
    ctx.emit(CollageReady(keyword=output.keyword, path=str(output.collage)))


def write_contact_sheet(ctx: StageContext, sets: list[OutputSet]) -> Path | None:
    """One sheet, a row per prompt, of each prompt's first images."""
    sets = [s for s in sets if s.complete]
    if not sets:
        return None
    columns = min(CONTACT_COLUMNS, min(len(s.jobs) for s in sets))
    images = [j.path for s in sets for j in s.jobs[:columns]]
    labels = [s.keyword if c == 0 else "" for s in sets for c in range(columns)]
    sheet = ctx.paths.contact_sheet
    title = f"{ctx.spec.identifier} {ctx.spec.class_name}: every prompt"
    make_collage(images, sheet, columns=columns, title=title, labels=labels)
    ctx.emit(CollageReady(keyword="contact_sheet", path=str(sheet)))
    return sheet


def pack_images_missing(ctx: StageContext) -> int:
    return sum(1 for s in plan_outputs(ctx.spec, ctx.paths.outputs) for j in s.jobs if not j.path.exists())


def generate_pack(ctx: StageContext, load: Callable[[], Components]) -> list[OutputSet]:
    """Make every missing image, collage and the contact sheet; `load()` returns the trained Components."""
    sets = plan_outputs(ctx.spec, ctx.paths.outputs)
    by_keyword = {s.keyword: s for s in sets}
    rank, world = image_shard()  # several GPUs: this process makes every world-th batch, collages come after
    batches = shard(fixed_batches([j for s in sets for j in s.jobs], ctx.spec.generate.batch_size), rank, world)
    jobs = [j for b in batches for j in b]
    missing = sum(1 for j in jobs if not j.path.exists())
    shared = ctx.take(SAMPLER_KEY)
    if missing:
        started = time.perf_counter()
        parts = load()
        parts.unet = merge_adapters(parts.unet)  # one merged weight runs faster than base + adapter
        parts.text_encoder = merge_adapters(parts.text_encoder)
        if parts.text_encoder_2 is not None:
            parts.text_encoder_2 = merge_adapters(parts.text_encoder_2)
        costs = {"load": time.perf_counter() - started}
        sampler = _reuse(ctx, shared, parts) or make_sampler(ctx, parts, missing, costs)
        shared = None
        written: set[str] = set()

        def collage_when_complete(batch: list[ImageJob]) -> None:
            for keyword in dict.fromkeys(j.label for j in batch):
                output = by_keyword[keyword]
                if keyword not in written and output.complete:
                    write_collage(ctx, output)
                    written.add(keyword)

        try:
            render(
                sampler, batches, stage="generate", emit=ctx.emit,
                check_stop=ctx.check_stop, on_batch_written=collage_when_complete if world == 1 else None,
            )
            log_costs(ctx, "the prompt pack", costs, sampler, time.perf_counter() - started)
        finally:
            del sampler, parts
            release(ctx.device)
    else:
        ctx.emit(Progress(stage="generate", done=len(jobs), total=len(jobs), label="all images exist"))
    if shared is not None:
        del shared
        release(ctx.device)
    if world == 1:
        finish_pack(ctx, sets)
    return sets


def _reuse(ctx: StageContext, sampler: ImageSampler | None, parts: Components) -> ImageSampler | None:
    """The class images' compiled sampler now drawing with the trained weights, or None to make a new one."""
    if sampler is None:
        return None
    try:
        sampler.swap_weights(parts)
    except ValueError as exc:
        ctx.log.warning("could not reuse the class images' sampler (%s); making a new one", exc)
        release(ctx.device)
        return None
    ctx.log.info("the prompt pack reuses the class images' compiled sampler")
    return sampler


def finish_pack(ctx: StageContext, sets: list[OutputSet] | None = None) -> None:
    """Collages of complete prompts that lack one, then the contact sheet (once, after every shard)."""
    sets = plan_outputs(ctx.spec, ctx.paths.outputs) if sets is None else sets
    for output in sets:
        if output.complete and not output.collage.exists():
            write_collage(ctx, output)
    write_contact_sheet(ctx, sets)


def run_generate(ctx: StageContext) -> None:
    """Run the prompt pack with the trained model (stage 'generate')."""
    from ioncannon.engine.families import load_trained

    # a plan with fp8 base weights is for a card too small for them in bf16: the sampler places them block by block
    generate_pack(ctx, lambda: load_trained(ctx, dtype=ctx.dtype, on_device=frozen_weights(ctx) == "plain"))
