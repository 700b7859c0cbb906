"""Flux's attention on this card: the product's kernel test at Flux's training shape, then a real-size Flux
transformer's forward and backward at 1024 px under the chosen kernels (where cuDNN's attention crashed on torch 2.11).
Flux's own rule (`Flux.attention_left_out`: no cuDNN in training) is not applied here: this tells whether a new
PyTorch image still needs it.

Prints the kernel line and, per pass, its time; exits 1 when a pass fails. One minute on an H100.

  python bench/flux_kernels.py [--res 1024] [--passes 3]
  python bench/flux_kernels.py --size tiny    # on the CPU: checks the script
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, default=1024)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--size", default="real", choices=("real", "tiny"))
    args = ap.parse_args()
    from types import SimpleNamespace

    from diffusers import FluxTransformer2DModel

    from ioncannon.engine import attention
    from ioncannon.engine.families import family_for
    from ioncannon.engine.families.flux import transformer_config

    tiny = args.size == "tiny"
    device = torch.device("cpu" if tiny else "cuda")
    dtype = torch.float32 if tiny else torch.bfloat16
    res = 64 if tiny else args.res
    text_tokens = 32 if tiny else 512
    flux = family_for("flux")
    config = transformer_config(args.size)
    parts = SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(**config)),
                            tokenizer_2=SimpleNamespace(model_max_length=text_tokens))
    t = time.perf_counter()
    choice = attention.choose(device, dtype, flux.attention_shapes(parts, res), backward=True)
    attention.apply(choice, device)
    print(f"{choice.sentence()} [{time.perf_counter() - t:.1f} s]", flush=True)
    for trial in choice.trials:
        print(f"  {trial.backend}: {'ok' if trial.ok else 'FAILED'} {trial.ms or ''} {trial.error}", flush=True)
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = FluxTransformer2DModel(**config)
    model.requires_grad_(False)
    model.enable_gradient_checkpointing()
    side = res // 8
    cond = {"hidden": torch.randn(1, text_tokens, config["joint_attention_dim"], device=device, dtype=dtype),
            "pooled": torch.randn(1, config["pooled_projection_dim"], device=device, dtype=dtype)}
    for i in range(args.passes):
        x = torch.randn(1, 16, side, side, device=device, dtype=dtype, requires_grad=True)
        t = time.perf_counter()
        try:
            flux.predict(model, x, torch.full((1,), 500.0, device=device), cond).float().square().mean().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - the point of the script is to say so
            print(f"pass {i + 1}: FAILED with {attention.first_line(exc)}", flush=True)
            return 1
        print(f"pass {i + 1}: forward + backward at {res} px in {time.perf_counter() - t:.2f} s "
              f"(grad finite: {bool(torch.isfinite(x.grad).all())})", flush=True)
    if device.type == "cuda":
        print(f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, {torch.cuda.get_device_name(0)}, "
              f"torch {torch.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
