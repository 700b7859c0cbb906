"""The whole job on one GPU, stage by stage: the real runner over the real stages on a random-weight SD1.5 model.

Builds a random-weight model of the real SD1.5 shapes, saves it as a diffusers folder, and runs jobs on it through
the client API (`handle.create` + `handle.start`: the detached runner, as `ioncannon run` starts it). Default recipe:
the plan the product picks for the card (full fine-tune on a roomy one), 800 steps, 200 class images, the built-in
pack (14 styles x 16 + 4 bare). For each run it prints one row per stage (wall, and what the time went to, read
from the job's events, runner.log and train_stats.json) and the total from start to the finished event.

  --runs cold,warm   a fresh compile cache, then a second job reusing it (class images are redrawn for both);
                     "compiled" is a warm run with the image sampler's compile forced (IONCANNON_COMPILE=1)
  --scale            adds rows for 400 / 1,600 steps and 64 / 1,200 pack images (warm cache)
  --diffusers        diffusers' StableDiffusionPipeline (fp16, DPM-Solver++ 25 steps, batch 4, PNG writes) for a ratio

Run it from a checkout (PYTHONPATH pointing at another checkout measures that one's code: before/after).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

STYLES = 14
BARE = 4
TINY = False  # --tiny: a CPU smoke test of this script on the demo's tiny model


def log(row: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(row), flush=True)


def build_model(folder: Path) -> Path:
    """A random-weight SD1.5-size diffusers folder (fp16, like the variant most people download)."""
    import torch
    from diffusers import StableDiffusionPipeline

    from ioncannon.engine.models.load import build_components, write_tiny_tokenizer

    if (folder / "model_index.json").exists():
        return folder
    if TINY:
        from ioncannon.engine.models.load import save_tiny_model

        return save_tiny_model(folder)
    t = time.perf_counter()
    tokenizer = write_tiny_tokenizer(folder.parent / "tokenizer-src")
    with torch.device("cuda"):  # a CPU init of 1 B parameters takes minutes
        parts = build_components("sd15", seed=0, tokenizer_dir=tokenizer)
    pipe = StableDiffusionPipeline(
        unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
        scheduler=parts.noise_scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16)  # saved as the fp16 variant most people download: half the bytes to write and read
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe, parts
    torch.cuda.empty_cache()
    log({"what": "model", "folder": str(folder), "build_save_s": round(time.perf_counter() - t, 1)})
    return folder


def random_photos(folder: Path, n: int = 10) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((768, 768), Image.Resampling.BICUBIC).save(folder / f"photo_{i:02d}.jpg")
    return folder


def job_spec(name: str, model: Path, photos: Path, steps: int, class_images: int, pack_images: int) -> Any:
    from ioncannon.engine import hardware
    from ioncannon.job.families import family_info
    from ioncannon.job.plan.memory import choose_plan
    from ioncannon.job.spec import JobSpec

    choice = choose_plan(hardware.probe(photos.parent), "recommended", "full", demo=TINY, family="sd15")
    plan = dataclasses.replace(choice.plan, steps=steps, num_class_images=class_images)
    per_prompt = max(1, round((pack_images - BARE) / STYLES))
    generate = dataclasses.replace(family_info("sd15").generate, images_per_prompt=per_prompt, bare_token_images=BARE)
    if TINY:
        generate = dataclasses.replace(generate, steps=4, batch_size=4)
    return JobSpec(name=name, photos_dir=str(photos), identifier="zwx", class_name="person", base_model=str(model),
                   family="sd15", resolution=64 if TINY else 512, device="cpu" if TINY else "cuda", train=plan,
                   generate=generate)


def run_job(workdir: Path, spec: Any, label: str) -> dict[str, Any]:
    """Start the runner on `spec`, wait for it, and read back per-stage figures."""
    from ioncannon.job import handle
    from ioncannon.job.lock import wait_for_exit

    paths = handle.create(workdir, spec)
    t0 = time.time()
    handle.start(paths, workdir)
    if not wait_for_exit(paths, 3600):
        raise SystemExit(f"{label}: the job did not finish within an hour")
    return summarise(paths, t0, label)


def _events(paths: Any) -> list[Any]:
    from ioncannon.job.events import parse_event

    lines = paths.events_file.read_text().splitlines()
    return [e for e in (parse_event(line) for line in lines) if e is not None]


def summarise(paths: Any, t0: float, label: str) -> dict[str, Any]:
    from ioncannon.job.events import Failed, JobFinished, Progress, StageFinished, StageStarted

    events = _events(paths)
    failed = [e for e in events if isinstance(e, Failed)]
    if failed:
        raise SystemExit(f"{label}: stage {failed[0].stage} failed: {failed[0].message}")
    log_text = paths.log_file.read_text(errors="replace")
    started = {e.stage: e.t for e in events if isinstance(e, StageStarted)}
    walls = {e.stage: e.seconds for e in events if isinstance(e, StageFinished)}
    finished = next(e for e in events if isinstance(e, JobFinished))
    rows = []
    for stage, wall in walls.items():
        progress = [e for e in events if isinstance(e, Progress) and e.stage == stage and e.done > 0]
        first = (progress[0].t - started[stage]) if progress else None
        rows.append({"stage": stage, "wall_s": round(wall, 1), "waited": _waited(stage, wall, first, progress,
                                                                                  log_text, paths)})
    total = finished.t - t0
    result = {"what": "job", "label": label, "total_s": round(total, 1), "runner_s": round(finished.seconds, 1),
              "stages": rows}
    log(result)
    return result


def _images_rate(progress: list[Any]) -> str:
    """The stage's own steady rate (its last progress event: images drawn after the first batch, over the time
    since; a rate between progress events would overstate it, each batch being told one batch late)."""
    if not progress or not progress[-1].rate:
        return ""
    return f"{progress[-1].rate:.2f} img/s after the first batch"


def _waited(stage: str, wall: float, first: float | None, progress: list[Any], log_text: str, paths: Any) -> str:
    first_s = f"{first:.1f} s to the first unit" if first is not None else ""
    if stage in ("class_images", "generate"):
        compiled = re.findall(r"compiled in ([\d.]+) s", log_text)
        notes = [first_s, _images_rate(progress)]
        if stage == "class_images" and compiled:
            notes.append(f"compile {compiled[0]} s")
        if stage == "generate":
            if "reuses the class images' compiled sampler" in log_text:
                notes.append("reused the class images' compiled sampler")
            elif len(compiled) > 1 or ("compiled in" in log_text and "keeping the compiled sampler" not in log_text):
                notes.append(f"compile {compiled[-1]} s" if compiled else "")
            else:
                notes.append("eager")
        return "; ".join(n for n in notes if n)
    if stage == "train":
        try:
            stats = json.loads(paths.train_stats_file.read_text())
        except (OSError, ValueError):
            return first_s
        stalls = stats.get("checkpoint_s", [])
        writes = stats.get("checkpoint_write_s", [])
        return "; ".join(n for n in [
            f"{first:.1f} s stage start to step 1" if first is not None else "",
            f"setup {stats.get('setup_s')} s, first steps (compile/graph) {stats.get('first_steps_s')} s "
            f"(each {stats.get('first_step_each_s')})",
            f"{stats.get('steady_steps_per_s')} steps/s steady ({stats.get('mode')})",
            f"checkpoint stalls {stalls} s" + (f" (background writes {writes} s)" if writes else ""),
            f"peak {stats.get('peak_gib')} GiB",
        ] if n)
    return first_s


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['label']}: job {result['total_s']:.1f} s from start to the finished event "
          f"(runner {result['runner_s']:.1f} s)")
    print(f"| {'stage':<12} | {'wall s':>7} | what the time went to")
    for row in result["stages"]:
        print(f"| {row['stage']:<12} | {row['wall_s']:>7.1f} | {row['waited']}")
    sys.stdout.flush()


def diffusers_pipeline(model: Path, out: Path, batches: int = 8, batch: int = 4) -> dict[str, Any]:
    """StableDiffusionPipeline fp16, DPM-Solver++ 25 steps, batch 4, with PNG writes: the reference speed."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model), torch_dtype=torch.float16, safety_checker=None,
                                                   requires_safety_checker=False).to("cuda")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True, exist_ok=True)
    prompts = ["a photo of zwx person, oil painting"] * batch

    def one(i: int) -> None:
        images = pipe(prompts, num_inference_steps=25, guidance_scale=7.0, height=512, width=512,
                      generator=torch.Generator("cuda").manual_seed(i)).images
        for j, im in enumerate(images):
            im.save(out / f"{i:03d}_{j}.png")

    one(0)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(1, batches + 1):
        one(i)
    torch.cuda.synchronize()
    rate = batches * batch / (time.perf_counter() - t)
    row = {"what": "diffusers", "images_per_s": round(rate, 2), "batch": batch,
           "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)}
    log(row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ioncannon-e2e"))
    parser.add_argument("--runs", default="cold,warm", help="cold, warm or both (comma-separated, in order)")
    parser.add_argument("--label", default="", help="a prefix for the rows (e.g. before / after)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--class-images", type=int, default=200)
    parser.add_argument("--images", type=int, default=228, help="pack images (14 styles x N + 4 bare)")
    parser.add_argument("--scale", action="store_true", help="also 400 / 1,600 steps and 64 / 1,200 images (warm)")
    parser.add_argument("--diffusers", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the jobs' folders")
    parser.add_argument("--budget", type=float, default=0, help="skip runs that would start after this many s")
    parser.add_argument("--tiny", action="store_true", help="a CPU smoke test of this script (tiny model, 64 px)")
    args = parser.parse_args()
    global TINY
    TINY = args.tiny

    import torch

    args.work.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"GPU {gpu}, torch {torch.__version__}", flush=True)
    model = build_model(args.work / "random-sd15")
    photos = random_photos(args.work / "photos")
    workdir = args.work / f"jobs-{args.label or 'run'}"
    shared = workdir / ".cache"
    results = []

    started = time.time()

    def one(kind: str, steps: int, images: int) -> None:
        if args.budget and time.time() - started > args.budget:
            print(f"skipped {kind}, {steps} steps, {images} images: over the --budget", flush=True)
            return
        os.environ.pop("IONCANNON_COMPILE", None)
        if kind == "compiled":
            os.environ["IONCANNON_COMPILE"] = "1"  # the runner inherits it
        if kind == "cold":
            shutil.rmtree(shared / "compile", ignore_errors=True)  # where the work dir keeps compiled kernels
        # class images are cached per work dir: every run draws them, as a fresh job on a fresh box does
        shutil.rmtree(shared / "class_images", ignore_errors=True)
        label = f"{args.label + ' ' if args.label else ''}{kind}, {steps} steps, {images} images"
        name = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        result = run_job(workdir, job_spec(name, model, photos, steps, args.class_images, images), label)
        print_table(result)
        results.append(result)
        if not args.keep:
            shutil.rmtree(workdir / name, ignore_errors=True)

    runs = [k.strip() for k in args.runs.split(",") if k.strip()]
    for kind in runs[:2]:
        one(kind, args.steps, args.images)
    if args.diffusers:
        diffusers_pipeline(model, args.work / "diffusers-out")
    for kind in runs[2:]:
        one(kind, args.steps, args.images)
    if args.scale:
        for steps in (400, 1600):
            one("warm", steps, args.images)
        for images in (64, 1200):
            one("warm", args.steps, images)
    print("\nsummary")
    for r in results:
        print(f"  {r['label']:<40} {r['total_s']:7.1f} s")


if __name__ == "__main__":
    main()
