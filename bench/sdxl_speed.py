"""SDXL on the GPU: our LoRA plans and the prompt pack against diffusers' own script and pipeline, same card, same run.

Random-weight SDXL of the real shapes (REFERENCE §9) at 1024 px with prior preservation (1 photo + 1 class image a
step). Prints one JSON line per measurement, then a table: steps/s, peak GiB and MFU for our 24 GB and 12 GB LoRA
plans and for diffusers' `train_dreambooth_lora_sdxl.py` (given with --diffusers-script; it trains from a saved
diffusers folder of the same random model); images/s with PNG writes for our sampler and `StableDiffusionXLPipeline`.
Phases run in order of importance and are skipped once --budget seconds are spent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import PEAK_FLOPS, PROMPT, levers, random_pngs, run_diffusers_script, train_plan  # noqa: E402
from common import mem as _mem  # noqa: E402
from common import reset_peak as _reset_peak  # noqa: E402
from common import sync as _sync  # noqa: E402

RES = 1024          # --size tiny (a CPU smoke test of this script) sets 64
DEVICE = "cuda"
SIZE = "real"
NEGATIVE = "blurry, lowres, deformed, watermark, text"
_T0 = time.perf_counter()
PHASES = ("train", "diffusers", "train-blocks", "train12", "pipeline", "ours", "ours-compiled")


def log(row: dict[str, Any]) -> None:
    row["t"] = round(time.perf_counter() - _T0, 1)
    print("RESULT " + json.dumps(row), flush=True)


def build(workdir: Path) -> Any:
    """Random real-size SDXL on the GPU (fp32, as loaded for training) and a saved fp16 diffusers folder of it."""
    import torch

    from ioncannon.engine.families import family_for

    sdxl = family_for("sdxl")
    t = time.perf_counter()
    with torch.device(DEVICE):  # a CPU init of 3.5 B parameters takes minutes
        parts = sdxl.build(SIZE, seed=0)
    _sync()
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    folder = workdir / "sdxl-random"
    pipe = sdxl.pipeline(parts)
    pipe.to(torch.float16)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    pipe.to(torch.float32)
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in
              (("unet", parts.unet), ("vae", parts.vae), ("te1", parts.text_encoder), ("te2", parts.text_encoder_2))}
    log({"phase": "build", "build_s": round(build_s, 1), "save_s": round(time.perf_counter() - t, 1),
         "params": params, "gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu",
         "torch": torch.__version__})
    return parts, folder


def unet_flops(parts: Any, batch: int, backward: bool) -> float:
    """UNet forward (and backward) FLOPs at 1024 px, counted by torch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ioncannon.engine.families import family_for

    unet = parts.unet
    dtype = next(unet.parameters()).dtype
    cond = family_for("sdxl").extra_conditioning(batch, RES, torch.device(DEVICE))
    width = unet.config.cross_attention_dim
    pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    cond.update(hidden=torch.randn(batch, 77, width, device=DEVICE, dtype=dtype),
                pooled=torch.randn(batch, pooled, device=DEVICE, dtype=dtype))
    cond = {k: v.to(dtype) for k, v in cond.items()}
    x = torch.randn(batch, 4, RES // 8, RES // 8, device=DEVICE, dtype=dtype, requires_grad=backward)
    t = torch.randint(0, 1000, (batch,), device=DEVICE)
    with FlopCounterMode(display=False) as counter:
        if backward:
            out = unet(x, t, **family_for("sdxl").denoiser_inputs(cond), return_dict=False)[0]
            out.float().square().mean().backward()
        else:
            with torch.inference_mode():
                unet(x, t, **family_for("sdxl").denoiser_inputs(cond), return_dict=False)
    return float(counter.get_total_flops())


def our_training(parts: Any, workdir: Path, key: str, steps: int, compile_scope: str = "") -> dict[str, Any]:
    """One SDXL plan through the product's cache and train stages on the built model; `compile_scope` "blocks"
    compiles the UNet's repeated blocks for it (the compile is in the row's first_steps_s)."""
    import torch

    from ioncannon.engine.compile_cache import uncompile_blocks
    from ioncannon.engine.weights.adapters import merge_adapters

    try:
        with levers(train_compile=compile_scope):
            plan, row = train_plan(parts, workdir, "sdxl", key, steps, RES, photos=10, class_images=20)
    finally:
        uncompile_blocks(parts.unet)
    if compile_scope:
        row["phase"] += f"+compiled-{compile_scope}"
    if plan.gradient_checkpointing:
        parts.unet.disable_gradient_checkpointing()
    flops = unet_flops(parts, 2, backward=True)
    parts.unet = merge_adapters(parts.unet)  # leave a plain UNet for the next phase
    parts.unet.to(torch.float32)
    return {**row, "mfu_pct": round(100 * row["steps_per_s"] * flops / PEAK_FLOPS, 1),
            "tflop_per_step": round(flops / 1e12, 2)}


def diffusers_training(
    script: Path, model: Path, workdir: Path, steps: int, rank: int, timeout: float
) -> dict[str, Any]:
    photos, klass = workdir / "dreambooth" / "photos", workdir / "dreambooth" / "class"
    random_pngs(photos, 10, 0, "sks man", RES)
    random_pngs(klass, 20, 1, "class", RES)
    args = [f"--pretrained_model_name_or_path={model}",
            f"--instance_data_dir={photos}", f"--class_data_dir={klass}", "--with_prior_preservation",
            "--num_class_images=20", "--instance_prompt=a photo of sks man", "--class_prompt=a photo of a man",
            f"--resolution={RES}", "--train_batch_size=1", "--mixed_precision=bf16", f"--max_train_steps={steps}",
            "--learning_rate=1e-4", f"--rank={rank}", "--checkpointing_steps=1000000", "--seed=0",
            f"--output_dir={workdir / 'dreambooth' / 'out'}", "--report_to=tensorboard"]
    if DEVICE != "cuda":
        args = [a if a != "--mixed_precision=bf16" else "--mixed_precision=no" for a in args]
    return {**run_diffusers_script(script, args, workdir, timeout), "rank": rank}


def _write_pngs(images: Any, folder: Path, start: int) -> None:
    from ioncannon.engine.generate.batches import write_png

    for i, img in enumerate(images):
        write_png(folder / f"{start + i:04d}.png", img)


def pipeline_generation(model: Path, batch: int, images: int, steps: int, flops: float) -> dict[str, Any]:
    """diffusers' StableDiffusionXLPipeline, fp16 (its VAE upcasts itself), DPM-Solver++, PNG writes included."""
    import numpy as np
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLPipeline

    dtype = torch.float16 if DEVICE == "cuda" else torch.float32
    pipe = StableDiffusionXLPipeline.from_pretrained(str(model), torch_dtype=dtype).to(DEVICE)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    _reset_peak()
    base = _mem()
    pipe([PROMPT] * batch, negative_prompt=[NEGATIVE] * batch, num_inference_steps=2, height=RES, width=RES)  # warm-up
    out = Path(tempfile.mkdtemp(prefix="pipe-"))
    _sync()
    t = time.perf_counter()
    for start in range(0, images, batch):
        result = pipe([PROMPT] * batch, negative_prompt=[NEGATIVE] * batch, num_inference_steps=steps, height=RES,
                      width=RES, generator=torch.Generator(DEVICE).manual_seed(start), output_type="np")
        _write_pngs((np.asarray(result.images) * 255).round().astype("uint8"), out, start)
    seconds = time.perf_counter() - t
    rate = images / seconds
    peak = (_mem("max_allocated") - base) / 2**30 + sum(
        p.numel() * p.element_size() for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2)
        for p in m.parameters()) / 2**30
    del pipe
    _reset_peak()
    return {"phase": "pipeline", "batch": batch, "images": images, "images_per_s": round(rate, 3),
            "peak_gib": round(peak, 2), "mfu_pct": round(100 * rate * flops / PEAK_FLOPS, 1)}


def our_generation(parts: Any, batch: int, images: int, steps: int, flops: float, compile_unet: bool,
                   cache: Path) -> dict[str, Any]:
    """The product's sampler (bf16, channels-last, fused q/k/v; the SDXL VAE in bf16) with its PNG writer."""
    import torch

    from ioncannon.engine.generate.batches import ImageJob, fixed_batches, render
    from ioncannon.engine.generate.sampler import ImageSampler

    t = time.perf_counter()
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    sampler = ImageSampler(parts, torch.device(DEVICE), dtype, steps=steps, resolution=RES, batch_size=batch,
                           compile_scope="model" if compile_unet else "", compile_cache=cache)
    _reset_peak()
    base = _mem()  # the weights, counted once below
    sampler.warm_up()
    startup = time.perf_counter() - t
    weights = sum(p.numel() * p.element_size() for m in parts.modules() for p in m.parameters()) / 2**30
    out = Path(tempfile.mkdtemp(prefix="ours-"))
    jobs = [ImageJob(out / f"{i:04d}.png", PROMPT, NEGATIVE, 1000 + i, "bench") for i in range(images)]
    _sync()
    t = time.perf_counter()
    render(sampler, fixed_batches(jobs, batch), stage="bench", emit=lambda e: None, check_stop=lambda: None,
           announce=False)
    _sync()
    rate = images / (time.perf_counter() - t)
    return {"phase": "ours-generate" + ("-compiled" if compile_unet else ""), "batch": batch, "images": images,
            "images_per_s": round(rate, 3), "mfu_pct": round(100 * rate * flops / PEAK_FLOPS, 1),
            "peak_gib": round((_mem("max_allocated") - base) / 2**30 + weights, 2),
            "startup_s": round(startup, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--diffusers-script", default="", help="path to diffusers' train_dreambooth_lora_sdxl.py")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--steps", type=int, default=60, help="our training steps per plan")
    ap.add_argument("--diffusers-steps", type=int, default=40)
    ap.add_argument("--gen-steps", type=int, default=20)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--pipeline-batches", default="4,8")
    ap.add_argument("--batch", type=int, default=8, help="our generation batch")
    ap.add_argument("--budget", type=float, default=330, help="seconds; later phases are skipped past it")
    ap.add_argument("--size", default="real", choices=("real", "tiny"), help="tiny: a CPU smoke test of this script")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"which of {', '.join(PHASES)} to run")
    args = ap.parse_args()
    phases = set(args.phases.split(","))
    import torch

    global RES, DEVICE, SIZE
    if args.size == "tiny":
        RES, DEVICE, SIZE = 64, "cpu", "tiny"
        common.DEVICE = "cpu"

    torch.backends.cuda.matmul.allow_tf32 = True
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sdxl-bench-"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(workdir / "compile"))
    left = lambda: args.budget - (time.perf_counter() - _T0)  # noqa: E731
    parts, model = build(workdir)
    rows: list[dict[str, Any]] = []
    if "train" in phases:
        rows.append(our_training(parts, workdir, "lora", args.steps))
        log(rows[-1])
    if "diffusers" in phases and args.diffusers_script and left() > 90:
        rows.append(diffusers_training(Path(args.diffusers_script), model, workdir, args.diffusers_steps, 16,
                                       timeout=max(left() - 60, 30)))
        log(rows[-1])
    if "train-blocks" in phases and left() > 120:
        rows.append(our_training(parts, workdir, "lora", args.steps, compile_scope="blocks"))
        log(rows[-1])
    if "train12" in phases and left() > 60:
        rows.append(our_training(parts, workdir, "lora-12gb", args.steps))
        log(rows[-1])
    parts.unet.to(DEVICE, torch.bfloat16 if DEVICE == "cuda" else torch.float32)
    gen_flops = args.gen_steps * unet_flops(parts, 2, backward=False)
    log({"phase": "gen-flops", "tflop_per_image_unet": round(gen_flops / 1e12, 1)})
    for batch in [int(b) for b in args.pipeline_batches.split(",") if b]:
        if "pipeline" in phases and left() > 40:
            rows.append(pipeline_generation(model, batch, args.images, args.gen_steps, gen_flops))
            log(rows[-1])
    if "ours" in phases and left() > 30:
        rows.append(our_generation(parts, args.batch, args.images, args.gen_steps, gen_flops, False, workdir / "c"))
        log(rows[-1])
    if "ours-compiled" in phases and left() > 150:
        rows.append(our_generation(parts, args.batch, args.images, args.gen_steps, gen_flops, True, workdir / "c"))
        log(rows[-1])
    print("\nSUMMARY")
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "error"}) + (" ERROR" if "error" in r else ""))


if __name__ == "__main__":
    main()
