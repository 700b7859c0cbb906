"""FLUX.1-dev on the GPU: our LoRA plans and the prompt pack against diffusers' script and FluxPipeline, same run.

Random-weight FLUX.1-dev of the real shapes (REFERENCE §9: transformer 11.9 B, T5-XXL 4.7 B), built on the GPU in
bf16 (a CPU init of 17 B parameters takes minutes), at 1024 px, one photo a step (Flux trains without class images
by default). Prints one JSON line per measurement, then a summary: steps/s, peak GiB (allocated, the weights
included: the transformer is moved off the GPU before each plan and our trainer brings it back) and MFU for our
24 GB (fp8 base weights), 40 GB and roomy plans and for diffusers' `train_dreambooth_lora_flux.py` (given with
--diffusers-script; it trains from a saved folder of the same random model); images/s with PNG writes for our
sampler and FluxPipeline (28 steps, guidance 3.5). Phases run in order of importance and are skipped once
--budget seconds are spent. MFU counts the model's FLOPs (LoRA: forward + input gradients), not recomputation.
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

RES = 1024          # --size tiny (a CPU smoke test of this script) sets 64
DEVICE = "cuda"
SIZE = "real"
_T0 = time.perf_counter()

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import PEAK_FLOPS, PROMPT, levers, random_pngs, run_diffusers_script, train_plan  # noqa: E402
from common import mem as _mem  # noqa: E402
from common import reset_peak as _reset_peak  # noqa: E402
from common import sync as _sync  # noqa: E402
from sdxl_speed import _write_pngs  # noqa: E402


def log(row: dict[str, Any]) -> None:
    row["t"] = round(time.perf_counter() - _T0, 1)
    print("RESULT " + json.dumps(row), flush=True)


def _dtype() -> Any:
    import torch

    return torch.bfloat16 if DEVICE == "cuda" else torch.float32


def build() -> Any:
    """Random FLUX.1-dev on the GPU in bf16."""
    import torch

    from ioncannon.engine.families import family_for

    t = time.perf_counter()
    before = torch.get_default_dtype()
    torch.set_default_dtype(_dtype())
    try:
        with torch.device(DEVICE):
            parts = family_for("flux").build(SIZE, seed=0)
    finally:
        torch.set_default_dtype(before)
    _sync()
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in
              (("transformer", parts.unet), ("vae", parts.vae), ("clip", parts.text_encoder),
               ("t5", parts.text_encoder_2))}
    log({"phase": "build", "build_s": round(time.perf_counter() - t, 1), "params": params,
         "gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu", "torch": torch.__version__})
    return parts


def fresh_transformer(parts: Any) -> None:
    """A new random transformer (a plan's fp8 storage or merged adapters change the old one for good)."""
    import torch
    from diffusers import FluxTransformer2DModel

    config = dict(parts.unet.config)
    parts.unet = None
    _reset_peak()
    before = torch.get_default_dtype()
    torch.set_default_dtype(_dtype())
    try:
        with torch.device(DEVICE):
            parts.unet = FluxTransformer2DModel.from_config(config)
    finally:
        torch.set_default_dtype(before)


def flops(parts: Any, batch: int, backward: bool) -> float:
    """Transformer FLOPs at RES for `batch` images: forward, or forward + input gradients (what LoRA training
    computes, the adapters' own being negligible), counted by torch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ioncannon.engine.families import family_for

    flux, model = family_for("flux"), parts.unet
    dtype = next(model.parameters()).dtype
    side = RES // 8
    tokens = parts.tokenizer_2.model_max_length
    cond = {"hidden": torch.randn(batch, tokens, model.config.joint_attention_dim, device=DEVICE, dtype=dtype),
            "pooled": torch.randn(batch, model.config.pooled_projection_dim, device=DEVICE, dtype=dtype)}
    x = torch.randn(batch, 16, side, side, device=DEVICE, dtype=dtype, requires_grad=backward)
    t = torch.full((batch,), 500.0, device=DEVICE)
    with FlopCounterMode(display=False) as counter:
        if backward:
            flux.predict(model, x, t, cond).float().square().mean().backward()
        else:
            with torch.inference_mode():
                flux.predict(model, x, t, cond)
    return float(counter.get_total_flops())


def _fp8_gemm_or_exit() -> bool:
    """True where this card multiplies float8 matrices with per-row scales; else the run stops saying so."""
    import torch

    from ioncannon.engine.weights.quantise import fp8_gemm_supported

    if not fp8_gemm_supported(torch.device(DEVICE)):
        raise SystemExit("+fp8-gemm needs a card with float8 tensor cores (Ada or Hopper, compute capability 8.9+)")
    return True


def our_training(parts: Any, workdir: Path, key: str, steps: int, step_flops: float) -> dict[str, Any]:
    """One Flux plan through the product's cache and train stages, the transformer starting off the GPU.

    Variants after the key, joined by "+": "torchao-matmul" runs the plan with torchao's own weight-only matmul in
    the fp8 layers (what the product ran before `Fp8Linear`), "fp8-gemm" with float8 GEMMs forward and
    backward (`fp8_gemm_wanted`), "compiled-blocks" with the transformer's blocks compiled one by one
    (`Family.train_compile`; the compile is in the row's first_steps_s), "fp8-base" with the frozen weights stored
    in fp8 on a plan that keeps them in bf16 (the roomy plan without its recompute, for the float8 GEMMs),
    "keep-attention" with checkpoints that keep the attention outputs (`Family.checkpoint_keeps`): each against the
    plan as the product runs it, in one call."""
    import torch

    from ioncannon.engine.compile_cache import uncompile_blocks
    from ioncannon.engine.weights.adapters import merge_adapters
    from ioncannon.engine.weights.quantise import Fp8Linear

    key, *variants = key.split("+")
    unknown = set(variants) - {"torchao-matmul", "fp8-gemm", "compiled-blocks", "fp8-base", "keep-attention"}
    if unknown:
        raise SystemExit(f"unknown plan variant {sorted(unknown)[0]!r}: torchao-matmul, fp8-gemm, compiled-blocks, "
                         "fp8-base or keep-attention")
    own_forward = Fp8Linear.forward
    if "torchao-matmul" in variants:
        Fp8Linear.forward = torch.nn.Linear.forward  # type: ignore[method-assign]
    try:
        with levers(train_compile="blocks" if "compiled-blocks" in variants else "",
                    checkpoint_keeps="attention" if "keep-attention" in variants else "",
                    fp8_gemm="on" if "fp8-gemm" in variants and _fp8_gemm_or_exit() else "off"):
            plan, row = train_plan(parts, workdir, "flux", key, steps, RES, photos=4,
                                   change={"base_weights": "fp8"} if "fp8-base" in variants else None)
    finally:
        Fp8Linear.forward = own_forward  # type: ignore[method-assign]
        uncompile_blocks(parts.unet)
    if variants:
        row["phase"] = "+".join([row["phase"], *variants])
    # which layers multiplied in float8 (the variant took effect, or the card refused it)
    row["fp8_gemm_layers"] = sum(1 for m in parts.unet.modules() if isinstance(m, Fp8Linear) and m.fp8_gemm)
    if plan.gradient_checkpointing:
        parts.unet.disable_gradient_checkpointing()
    if plan.base_weights == "plain":
        parts.unet = merge_adapters(parts.unet)  # a plain transformer for the next phase
    return {**row, "mfu_pct": round(100 * row["steps_per_s"] * step_flops / PEAK_FLOPS, 1)}


def pipeline_generation(parts: Any, batch: int, images: int, steps: int, image_flops: float) -> dict[str, Any]:
    """diffusers' FluxPipeline on the same modules (bf16), 28 steps at guidance 3.5, PNG writes included."""
    import numpy as np
    import torch

    from ioncannon.engine.families import family_for

    pipe = family_for("flux").pipeline(parts).to(DEVICE, _dtype())
    pipe.set_progress_bar_config(disable=True)
    tokens = parts.tokenizer_2.model_max_length
    _reset_peak()
    pipe([PROMPT] * batch, num_inference_steps=2, height=RES, width=RES, max_sequence_length=tokens)  # warm-up
    out = Path(tempfile.mkdtemp(prefix="pipe-"))
    _sync()
    t = time.perf_counter()
    for start in range(0, images, batch):
        result = pipe([PROMPT] * batch, num_inference_steps=steps, guidance_scale=3.5, height=RES, width=RES,
                      generator=torch.Generator(DEVICE).manual_seed(start), output_type="np",
                      max_sequence_length=tokens)
        _write_pngs((np.asarray(result.images) * 255).round().astype("uint8"), out, start)
    _sync()
    rate = images / (time.perf_counter() - t)
    return {"phase": "pipeline", "batch": batch, "images": images, "images_per_s": round(rate, 3),
            "peak_gib": round(_mem("max_allocated") / 2**30, 2),
            "mfu_pct": round(100 * rate * image_flops / PEAK_FLOPS, 1)}


def our_generation(parts: Any, batch: int, images: int, steps: int, image_flops: float, label: str,
                   compiled: bool = False, fp8_gemm: bool = False) -> dict[str, Any]:
    """The product's sampler with its PNG writer (the same path class images and the prompt pack take); `compiled`
    compiles the transformer's repeated blocks one by one (start-up included in startup_s); `fp8_gemm` stores the
    blocks in fp8 as the 24 GB plan does and multiplies in float8 (`fp8_gemm_wanted`; irreversible: the caller
    builds a fresh transformer after)."""
    import torch

    from ioncannon.engine.generate.batches import ImageJob, fixed_batches, render
    from ioncannon.engine.generate.sampler import ImageSampler

    t = time.perf_counter()
    torch._dynamo.reset()
    with levers(fp8_gemm="on" if fp8_gemm and _fp8_gemm_or_exit() else "off"):   # read as the layers are stored
        sampler = ImageSampler(parts, torch.device(DEVICE), _dtype(), steps=steps, guidance=3.5, resolution=RES,
                               batch_size=batch, compile_scope="blocks" if compiled else "",
                               frozen_weights="fp8" if fp8_gemm else "plain")
    _reset_peak()
    sampler.warm_up()
    startup = time.perf_counter() - t
    out = Path(tempfile.mkdtemp(prefix="ours-"))
    jobs = [ImageJob(out / f"{i:04d}.png", PROMPT, "", 1000 + i, "bench") for i in range(images)]
    _sync()
    t = time.perf_counter()
    render(sampler, fixed_batches(jobs, batch), stage="bench", emit=lambda e: None, check_stop=lambda: None,
           announce=False)
    _sync()
    rate = images / (time.perf_counter() - t)
    return {"phase": f"ours-generate{label}", "batch": batch, "images": images, "images_per_s": round(rate, 3),
            "mfu_pct": round(100 * rate * image_flops / PEAK_FLOPS, 1),
            "peak_gib": round(_mem("max_allocated") / 2**30, 2), "startup_s": round(startup, 1)}


def fp8_inference(parts: Any) -> None:
    """Hopper/Ada fp8 matmuls for generation: the blocks' linear layers with fp8 weights and per-row dynamic fp8
    activations (torchao), the rest bf16. Irreversible: run last."""
    import torch
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(parts.unet, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
              filter_fn=lambda m, n: isinstance(m, torch.nn.Linear) and "transformer_blocks." in n)


def diffusers_training(script: Path, parts: Any, workdir: Path, steps: int, timeout: float) -> dict[str, Any]:
    """diffusers' Flux DreamBooth LoRA script on a saved folder of the same random model, rank 16, batch 1, bf16,
    cached latents, gradient checkpointing (its 40 GB recipe), 1024 px; its step bar timed."""
    import torch

    from ioncannon.engine.families import family_for

    t = time.perf_counter()
    folder = workdir / "flux-random"
    family_for("flux").pipeline(parts).to(torch.bfloat16).save_pretrained(str(folder), safe_serialization=True)
    save_s = time.perf_counter() - t
    photos = workdir / "dreambooth" / "photos"
    random_pngs(photos, 4, 0, "sks man", RES)
    args = [f"--pretrained_model_name_or_path={folder}",
            f"--instance_data_dir={photos}", "--instance_prompt=a photo of sks man", f"--resolution={RES}",
            "--train_batch_size=1", "--mixed_precision=bf16", f"--max_train_steps={steps}", "--learning_rate=1e-4",
            "--rank=16", "--guidance_scale=3.5", "--gradient_checkpointing", "--cache_latents",
            "--checkpointing_steps=1000000", "--seed=0", f"--max_sequence_length={parts.tokenizer_2.model_max_length}",
            f"--output_dir={workdir / 'dreambooth' / 'out'}", "--report_to=tensorboard"]
    # cuDNN's attention crashes this script's first backward on some stacks (README: Attention kernels)
    cudnn_ok = "cudnn" in (KERNELS.order if KERNELS else ["cudnn"])
    return {**run_diffusers_script(script, args, workdir, timeout, cudnn_sdpa=cudnn_ok), "save_s": round(save_s, 1)}


KERNELS: Any = None   # the product's attention choice for this card, made once after the build


def choose_kernels(parts: Any) -> None:
    """The product's attention test at Flux's training shape, applied to this process (the FLOP count and the
    pipeline run outside the product's stages)."""
    import torch

    from ioncannon.engine import attention
    from ioncannon.engine.families import family_for

    global KERNELS
    flux = family_for("flux")
    KERNELS = attention.choose(torch.device(DEVICE), _dtype(), flux.attention_shapes(parts, RES), backward=True,
                               left_out=flux.attention_left_out(True))
    attention.apply(KERNELS, torch.device(DEVICE))
    log({"phase": "attention", "choice": KERNELS.sentence()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--diffusers-script", default="", help="path to diffusers' train_dreambooth_lora_flux.py")
    ap.add_argument("--workdir", default="")
    ap.add_argument("--steps", type=int, default=30, help="our training steps per plan")
    ap.add_argument("--diffusers-steps", type=int, default=20)
    ap.add_argument("--gen-steps", type=int, default=28)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--plans", default="lora-24gb,lora-40gb,lora,lora-24gb+torchao-matmul",
                    help="our plans, in order, each with optional variants (+torchao-matmul: torchao's weight-only "
                         "matmul in the fp8 layers; +fp8-gemm: float8 GEMMs forward and backward; +compiled-blocks: "
                         "the transformer's blocks compiled; +fp8-base: the frozen weights stored in fp8 on a bf16 "
                         "plan; +keep-attention: checkpoints keep the attention outputs), e.g. "
                         "lora-24gb+fp8-gemm+compiled-blocks or lora+fp8-base+fp8-gemm")
    ap.add_argument("--phases", default="train,generate,diffusers,compiled",
                    help="which of train (our plans), generate (pipeline and ours, eager, then ours with fp8 "
                         "GEMMs), diffusers (their script), compiled (our sampler, compiled blocks, then fp8 "
                         "matmuls) to run")
    ap.add_argument("--budget", type=float, default=520, help="seconds; later phases are skipped past it")
    ap.add_argument("--size", default="real", choices=("real", "tiny"), help="tiny: a CPU smoke test of this script")
    args = ap.parse_args()
    import torch

    global RES, DEVICE, SIZE
    if args.size == "tiny":
        RES, DEVICE, SIZE = 64, "cpu", "tiny"
        common.DEVICE = "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="flux-bench-"))
    left = lambda: args.budget - (time.perf_counter() - _T0)  # noqa: E731
    parts = build()
    choose_kernels(parts)
    step_flops, image_flops = flops(parts, 1, backward=True), args.gen_steps * flops(parts, 1, backward=False)
    log({"phase": "flops", "tflop_per_step": round(step_flops / 1e12, 1),
         "tflop_per_image": round(image_flops / 1e12, 1)})
    rows = []
    phases = set(args.phases.split(","))
    for key in [k for k in args.plans.split(",") if k and "train" in phases]:
        if left() < 60:
            break
        try:
            rows.append(our_training(parts, workdir, key, args.steps, step_flops))
        except torch.OutOfMemoryError as exc:
            rows.append({"phase": f"ours-{key}", "error": f"out of memory: {exc}"[:300]})
        log(rows[-1])
        fresh_transformer(parts)
    for run in (lambda: pipeline_generation(parts, args.batch, args.images, args.gen_steps, image_flops),
                lambda: our_generation(parts, args.batch, args.images, args.gen_steps, image_flops, ""),
                lambda: our_generation(parts, args.batch, args.images, args.gen_steps, image_flops, "-fp8-gemm",
                                       fp8_gemm=True)):
        if "generate" in phases and left() > 45:
            rows.append(run())
            log(rows[-1])
    if "generate" in phases:
        fresh_transformer(parts)
    if args.diffusers_script and "diffusers" in phases and left() > 150:
        parts.unet.to("cpu")
        for module in (parts.vae, parts.text_encoder, parts.text_encoder_2):
            module.to("cpu")
        _reset_peak()
        rows.append(diffusers_training(Path(args.diffusers_script), parts, workdir, args.diffusers_steps,
                                       timeout=max(left() - 20, 30)))
        log(rows[-1])
    if DEVICE == "cuda" and "compiled" in phases and left() > 90:
        rows.append(our_generation(parts, args.batch, args.images, args.gen_steps, image_flops, "-compiled-blocks",
                                   compiled=True))
        log(rows[-1])
    if DEVICE == "cuda" and "compiled" in phases and left() > 90:
        fp8_inference(parts)
        rows.append(our_generation(parts, args.batch, args.images, args.gen_steps, image_flops,
                                   "-fp8-matmuls-compiled-blocks", compiled=True))
        log(rows[-1])
    print("\nSUMMARY")
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "error"}) + (" ERROR " + r["error"][-400:]
                                                                          if "error" in r else ""))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
