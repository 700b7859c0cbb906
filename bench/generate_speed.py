"""Benchmark the product's generation path on a random-weight SD1.5-shaped model: images/s, peak GiB, MFU, start-up.

`--gpus N` runs the class-image stage on one GPU and then sharded over N GPUs (the runner's launcher, one process
per GPU) and prints the scaling efficiency measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ioncannon.engine.context import StageContext
from ioncannon.engine.generate.batches import fixed_batches, render
from ioncannon.engine.generate.sampler import ImageSampler
from ioncannon.engine.models.load import Components, build_components
from ioncannon.job.outputs import ImageJob
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import GeneratePlan, TrainPlan
from ioncannon.job.spec import JobSpec

H100_PEAK = 989e12
PROMPT = "a professional portrait photograph of sks man, 85mm lens, soft studio lighting"
NEGATIVE = "blurry, lowres, deformed, watermark, text"


def flops_per_image(parts: Components, steps: int, resolution: int, dtype: torch.dtype) -> float:
    """UNet forward at batch 2 (guidance) x steps + one VAE decode, counted by torch's FLOP counter."""
    side = resolution // 8
    latents = torch.zeros(2, 4, side, side, device="cuda", dtype=dtype)
    context = torch.zeros(2, 77, parts.unet.config.cross_attention_dim, device="cuda", dtype=dtype)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as unet_counter:
            parts.unet(latents, torch.tensor(500, device="cuda"), encoder_hidden_states=context)
        with FlopCounterMode(display=False) as vae_counter:
            parts.vae.decode(latents[:1])
    return steps * unet_counter.get_total_flops() + vae_counter.get_total_flops()


def measure(parts: Components, dtype: torch.dtype, batch: int, mode: str, tuned: bool, images: int,
            steps: int, resolution: int, cache: Path, flops: float) -> dict[str, float | int | str]:
    """One variant: mode is eager, compile (the whole UNet) or blocks (its repeated blocks one by one)."""
    torch._dynamo.reset()  # a fresh compile per variant, not a cached graph from the previous one
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    sampler = ImageSampler(parts, torch.device("cuda"), dtype, steps=steps, resolution=resolution,
                           batch_size=batch, compile_scope={"eager": "", "blocks": "blocks"}.get(mode, "model"),
                           compile_cache=cache / "compile", tuned=tuned)
    sampler.warm_up()
    startup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        jobs = [ImageJob(Path(out) / f"{i:04d}.png", PROMPT, NEGATIVE, 1000 + i, "bench") for i in range(images)]
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        render(
            sampler,
            fixed_batches(jobs, batch),
            stage="bench",
            emit=lambda e: None,
            check_stop=lambda: None,
            announce=False,
        )
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t1
    rate = images / seconds
    row = {
        "batch": batch,
        "compile": mode,
        "tuned": tuned,
        "dtype": str(dtype).replace("torch.", ""),
        "images": images,
        "images_per_s": round(rate, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "mfu_pct": round(100 * rate * flops / H100_PEAK, 1),
        "startup_s": round(startup, 1),
        "denoise_s": round(sampler.timings["denoise"], 2),
        "decode_s": round(sampler.timings["decode"], 2),
    }
    del sampler
    return row


def save_model(parts: Components, workdir: Path) -> Path:
    """Write the random model as a diffusers folder so the class-image stage loads it like a real base model."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    model = workdir / "sd15-random"
    if not (model / "model_index.json").exists():
        pipe = StableDiffusionPipeline(unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder,
                                       tokenizer=parts.tokenizer,
                                       scheduler=DPMSolverMultistepScheduler.from_config(parts.noise_scheduler.config),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(str(model), safe_serialization=True)
    return model


def class_images_run(model: Path, workdir: Path, count: int, batch: int, gpus: int = 1) -> dict[str, float | int]:
    """The class-image stage end to end (load from disk, start-up, generate, cache) with product defaults.

    gpus > 1 goes through the runner's stage hook, which shards the images over one process per GPU.
    """
    from ioncannon.engine.stages import stage_function
    from ioncannon.job.events import Progress

    torch._dynamo.reset()
    spec = JobSpec(name="bench", photos_dir=str(workdir), identifier="sks", class_name="man", base_model=str(model),
                   resolution=512, device="cuda", train=TrainPlan(num_class_images=count, num_processes=gpus),
                   generate=GeneratePlan(batch_size=batch))
    paths = JobPaths(workdir / "job")
    paths.ensure()
    events: list[object] = []
    ctx = StageContext(spec=spec, paths=paths, workdir=workdir, emit=events.append, should_stop=lambda: False,
                       device=torch.device("cuda"))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    stage_function("class_images")(ctx)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    made = len(list(paths.class_images("man").glob("*.png")))
    # the render rate leaves out model loading and compiling; with several GPUs it is the sum over them
    rates = [e.rate for e in events if isinstance(e, Progress) and e.rate > 0]
    return {"class_images": made, "seconds": round(seconds, 1), "gpus": gpus,
            "render_images_per_s": round(rates[-1], 2) if rates else 0.0,
            "compile_env": os.environ.get("IONCANNON_COMPILE", "policy")}


def scaling(one: dict, many: dict, gpus: int) -> dict[str, float | int]:
    """N-GPU throughput against N x one GPU (1.0 = perfect), for rendering alone and for the whole stage."""
    wall_1 = one["class_images"] / max(one["seconds"], 1e-9)
    wall_n = many["class_images"] / max(many["seconds"], 1e-9)
    r1, rn = one["render_images_per_s"], many["render_images_per_s"]
    return {"gpus": gpus, "render_images_per_s_1": r1, "render_images_per_s_n": rn,
            "render_efficiency": round(rn / (gpus * r1), 3) if r1 else 0.0,
            "stage_efficiency": round(wall_n / (gpus * wall_1), 3) if wall_1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--variants",
        default="eager:4:plain,eager:16:plain,compile:16:plain,compile:16:tuned,eager:16:tuned,compile:8:tuned",
        help="comma-separated eager|compile|blocks:batch:plain|tuned, in this order "
        "(tuned fuses q/k/v in place: put plain first)",
    )
    parser.add_argument("--images", type=int, default=64, help="images per measured variant")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"))
    parser.add_argument("--class-images", type=int, default=200, help="0 to skip the class-image run")
    parser.add_argument("--class-batch", type=int, default=16)
    parser.add_argument("--workdir", default="", help="where the compile cache and saved model live")
    parser.add_argument("--json", default="", help="append one JSON line per result here")
    parser.add_argument("--gpus", type=int, default=1,
                        help="run the class-image stage on 1 GPU, then sharded over this many, and print the scaling")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gen-bench-"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(workdir / ".cache" / "compile"))

    def record(row: dict[str, object]) -> None:
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    t0 = time.perf_counter()
    parts = build_components("sd15")
    record(
        {
            "device": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "build_s": round(time.perf_counter() - t0, 1),
        }
    )
    for module in (parts.unet, parts.vae, parts.text_encoder):
        module.to("cuda", dtype)
    flops = flops_per_image(parts, args.steps, 512, dtype)
    record({"tflop_per_image": round(flops / 1e12, 2), "limit_images_per_s": round(H100_PEAK / flops, 1)})
    if args.gpus > 1:
        # the same compile policy for both runs (default: eager), so the ratio measures sharding alone
        os.environ.setdefault("IONCANNON_COMPILE", "0")
        model = save_model(parts, workdir)
        del parts
        torch.cuda.empty_cache()
        count = max(args.class_images, 16 * args.gpus)
        one = class_images_run(model, workdir / "gpus-1", count, args.class_batch, gpus=1)
        record(one)
        many = class_images_run(model, workdir / f"gpus-{args.gpus}", count, args.class_batch, gpus=args.gpus)
        record(many)
        record(scaling(one, many, args.gpus))
        return
    if args.class_images:
        # first, on a cold compile cache: what the first job on a fresh box sees
        record(class_images_run(save_model(parts, workdir), workdir, args.class_images, args.class_batch))
    for variant in args.variants.split(","):
        mode, batch, tuning = variant.split(":")
        record(measure(parts, dtype, int(batch), mode, tuning == "tuned", args.images, args.steps, 512,
                       workdir / ".cache", flops))
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
