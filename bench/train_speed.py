"""Training speed on the GPU: every plan on a random-weight SD1.5, 512 px, prior preservation, the product's stage code.

`--gpus N` also runs each plan data-parallel on N GPUs (one process each, the runner's launcher) and prints the
scaling efficiency against one GPU measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

H100_BF16_FLOPS = 989e12
PLANS = ("full-roomy", "full-12gb", "full-10gb", "lora", "lora-8gb", "classic", "full-roomy-nocompile")


def _plan(name: str, steps: int):  # -> TrainPlan
    from ioncannon.job.plan.box import GpuInfo, HardwareInfo
    from ioncannon.job.plan.memory import choose_plan, plan_options

    hw = HardwareInfo([GpuInfo(0, "NVIDIA H100 80GB HBM3", 79.1, 78.0)], 100.0, 16, 128.0)
    if name == "classic":
        plan = choose_plan(hw, preset="classic", mode="full", family="sd15").plan
    else:
        key = name.removesuffix("-nocompile")
        plan = next(c.plan for c in plan_options(hw, family="sd15") if c.label and _key(c.plan) == key)
    plan = dataclasses.replace(plan, steps=steps, checkpoint_every=0, sample_every=0)
    if name.endswith("-nocompile"):
        plan = dataclasses.replace(plan, compile=False)
    return plan


def _key(plan) -> str:
    from ioncannon.job.plan.memory import plan_key

    return plan_key(plan, "sd15")


def _random_pngs(folder: Path, n: int, size: int, seed: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(folder / f"img {i:03d}.png")


def _bench_job(workdir: Path, name: str, plan, photos: int, class_images: int):  # -> (JobSpec, JobPaths)
    """A 512 px job of random photos and class images, as the prepare and class-image stages would leave it."""
    from ioncannon.job.paths import JobPaths
    from ioncannon.job.spec import JobSpec, save_spec

    root = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{name}-"))
    spec = JobSpec(name=name, photos_dir=str(root), identifier="zq", class_name="person", base_model="random-sd15",
                   resolution=512, device="cuda", train=plan)
    paths = JobPaths(root / "job")
    save_spec(paths, spec)
    _random_pngs(paths.training_samples("person"), photos, 512, 0)
    _random_pngs(paths.class_images("person"), class_images, 512, 1)
    return spec, paths


def random_sd15():  # -> Components; module level so every GPU process of a launch can build its own copy
    import torch

    from ioncannon.engine.models.load import build_components

    with torch.device("cuda", torch.cuda.current_device()):  # a CPU init of 1 B params takes longer than the run
        return build_components("sd15", seed=0)


def scaling(one: dict, many: dict, gpus: int) -> dict:
    """Images a second on N GPUs against N x one GPU (1.0 = perfect)."""
    rate_1 = one["steps_per_s"] * one.get("global_batch", 1)
    rate_n = many["steps_per_s"] * many.get("global_batch", gpus)
    return {"plan": one["plan"], "gpus": gpus, "images_per_s_1": round(rate_1, 2), "images_per_s_n": round(rate_n, 2),
            "speed_up": round(rate_n / rate_1, 2) if rate_1 else 0.0,
            "efficiency": round(rate_n / (gpus * rate_1), 3) if rate_1 else 0.0}


def run_one(name: str, steps: int, workdir: Path, gpus: int = 1) -> dict:
    """One plan in this process: build the model on the GPU, run the cache and training stages, measure.

    With gpus > 1 the training stage runs through the runner's launcher, one process per GPU; the per-GPU batch
    and the step count stay as on one GPU, so steps/s compare directly.
    """
    import torch

    from ioncannon.engine.context import StageContext
    from ioncannon.engine.models.load import build_components
    from ioncannon.engine.train.loop import run_cache, run_training

    device = torch.device("cuda")
    plan = dataclasses.replace(_plan(name, steps), num_processes=gpus)
    spec, paths = _bench_job(workdir, name, plan, photos=10, class_images=50)
    events: list = []
    ctx = StageContext(spec=spec, paths=paths, workdir=workdir, emit=events.append, should_stop=lambda: False,
                       device=device)
    t = time.perf_counter()
    with torch.device("cuda"):  # random init on the GPU: a CPU init of 1 B params takes longer than the run
        components = build_components("sd15", seed=0)
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    run_cache(ctx, components)
    torch.cuda.synchronize()
    cache_s = time.perf_counter() - t
    components.unet.to("cpu")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    if gpus > 1:
        from ioncannon.engine.parallel.launch import launch

        launch("train", ctx, gpus, stage_kwargs={"components": random_sd15})
        components.unet.to("cuda")  # for the FLOP count below
    else:
        run_training(ctx, components)
    total_s = time.perf_counter() - t
    stats = json.loads((paths.meta / "train_stats.json").read_text())
    flops = _flops(components, plan)
    rate = stats.get("steady_steps_per_s") or 0.0
    return {
        "plan": name,
        "steps_per_s": rate,
        "peak_gib": stats.get("peak_gib"),
        "mfu": flops * rate / H100_BF16_FLOPS,
        "tflop_per_step": flops / 1e12,
        "build_s": build_s,
        "cache_s": cache_s,
        "setup_s": stats.get("setup_s"),
        "compile_s": stats.get("first_steps_s"),
        "train_s": total_s,
        "mode": stats.get("mode"),
        "gpu": torch.cuda.get_device_name(0),
        "gpus": stats.get("processes", 1),
        "global_batch": stats.get("global_batch", 1),
    }


def _flops(components, plan) -> float:
    """Model FLOPs of one step's forward + backward at batch 2 (no recompute), counted on the trained UNet."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = components.unet
    if plan.gradient_checkpointing:
        unet.disable_gradient_checkpointing()
    dtype = next(unet.parameters()).dtype
    x = torch.randn(2, 4, 64, 64, device="cuda", dtype=dtype)
    t = torch.randint(0, 1000, (2,), device="cuda")
    ehs = torch.randn(2, 77, 768, device="cuda", dtype=dtype)
    with FlopCounterMode(display=False) as counter:
        unet(x, t, ehs, return_dict=False)[0].float().square().mean().backward()
    return float(counter.get_total_flops())


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def smoke(workdir: Path) -> None:
    """The product path on the GPU beyond raw speed: previews, checkpoints, stop + resume, hand-off, load_trained."""
    import torch

    from ioncannon.engine.context import StageContext
    from ioncannon.engine.models.load import build_components
    from ioncannon.engine.train.loop import run_cache, run_training
    from ioncannon.engine.weights.trained import apply_trained, trained_info
    from ioncannon.job.errors import StopRequested
    from ioncannon.job.events import CheckpointSaved, Message, SampleReady

    def fresh():
        with torch.device("cuda"):
            return build_components("sd15", seed=0)

    for name, steps, stop_at in (("lora", 40, 25), ("full-12gb", 30, 0)):
        plan = dataclasses.replace(_plan(name, steps), checkpoint_every=10 if name == "lora" else 15, sample_every=20)
        spec, paths = _bench_job(workdir, f"smoke-{name}", plan, photos=6, class_images=12)
        events: list = []
        calls = {"n": 0}

        def should_stop(calls: dict[str, int] = calls, stop_at: int = stop_at) -> bool:
            calls["n"] += 1
            return stop_at > 0 and calls["n"] == stop_at

        ctx = StageContext(spec=spec, paths=paths, workdir=workdir, emit=events.append, should_stop=should_stop,
                           device=torch.device("cuda"))
        run_cache(ctx, fresh())
        try:
            run_training(ctx, fresh)
        except StopRequested:
            events.append(Message("info", "stopped as asked"))
            run_training(ctx, fresh)
        stats = json.loads((paths.meta / "train_stats.json").read_text())
        comps = apply_trained(fresh(), paths)
        with torch.no_grad():
            out = comps.unet(torch.randn(1, 4, 64, 64, device="cuda"), torch.tensor([500], device="cuda"),
                             torch.randn(1, 77, 768, device="cuda")).sample
        print("SMOKE " + json.dumps({
            "plan": name, "info": trained_info(paths), "finite": bool(torch.isfinite(out).all()),
            "previews": [e.step for e in events if isinstance(e, SampleReady)],
            "checkpoints": [e.step for e in events if isinstance(e, CheckpointSaved)],
            "messages": [e.text for e in events if isinstance(e, Message)],
            "checkpoint_s": stats.get("checkpoint_s"), "preview_s": stats.get("preview_s"),
            "peak_gib": stats.get("peak_gib"), "mode": stats.get("mode"),
        }), flush=True)
        del comps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--plans", default=",".join(PLANS))
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=int, default=400)
    ap.add_argument("--smoke", action="store_true", help="check previews, checkpoints and resume instead of speed")
    ap.add_argument("--gpus", type=int, default=1,
                    help="also run each plan data-parallel on this many GPUs and print the scaling efficiency")
    ap.add_argument("--procs", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    workdir = Path(args.workdir)
    if args.smoke:
        smoke(workdir)
        return
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.steps, workdir, args.procs)), flush=True)
        return
    rows = []
    runs = [(name, 1) for name in args.plans.split(",")]
    if args.gpus > 1:
        runs = [(name, g) for name in args.plans.split(",") for g in (1, args.gpus)]
    for name, gpus in runs:
        # one process per plan: clean peak-memory numbers, and a failing plan cannot take the others down
        cmd = [sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--workdir", str(workdir),
               "--procs", str(gpus)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=os.environ.copy())
            out = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = f"{_text(exc.stdout)}{_text(exc.stderr)}\ntimed out after {args.timeout}s"
        line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"--- {name} failed:\n{out[-4000:]}", flush=True)
            rows.append({"plan": name, "error": out.strip().splitlines()[-1][:120] if out.strip() else "no output"})
            continue
        row = json.loads(line[len("RESULT "):])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    if args.gpus > 1:
        print_scaling(rows, args.gpus)
        return
    print("| plan | steps/s | peak GiB | MFU | TFLOP/step | start-up s (build / cache / setup / compile) | step |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['plan']} | failed: {r['error']} | | | | | |")
            continue
        print(f"| {r['plan']} | {r['steps_per_s']:.1f} | {r['peak_gib']:.1f} | {100 * r['mfu']:.1f}% | "
              f"{r['tflop_per_step']:.2f} | {r['build_s']:.0f} / {r['cache_s']:.0f} / {r['setup_s']:.0f} / "
              f"{r['compile_s']:.0f} | {r['mode']} |")


def print_scaling(rows: list[dict], gpus: int) -> None:
    """Pairs of (1 GPU, N GPUs) rows as a table of images/s, speed-up and efficiency."""
    print(f"| plan | 1 GPU images/s | {gpus} GPUs images/s | speed-up | scaling efficiency | steps/s (1 / {gpus}) |")
    print("|---|---|---|---|---|---|")
    for one, many in zip(rows[0::2], rows[1::2], strict=True):
        if "error" in one or "error" in many:
            print(f"| {one['plan']} | failed: {one.get('error') or many.get('error')} | | | | |")
            continue
        s = scaling(one, many, gpus)
        print(f"| {s['plan']} | {s['images_per_s_1']:.1f} | {s['images_per_s_n']:.1f} | {s['speed_up']:.2f}x | "
              f"{100 * s['efficiency']:.0f}% | {one['steps_per_s']:.1f} / {many['steps_per_s']:.1f} |")


if __name__ == "__main__":
    main()
