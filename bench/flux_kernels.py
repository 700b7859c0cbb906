"""Flux's attention on this card: the product's kernel test at Flux's training shape, then a real-size Flux
transformer's forward and backward at 1024 px under the chosen kernels (where cuDNN's attention crashed on torch 2.11).
Flux's own rule (`Flux.attention_left_out`: no cuDNN in training) is not applied here: this tells whether a new
PyTorch image still needs it.

Prints the kernel line and, per pass, its time; exits 1 when a pass fails. One minute on an H100.

--bisect narrows down what in the model breaks the kernel the test passed: one forward and backward under that
kernel alone (cuDNN by default), each variant in a process of its own (an illegal memory access ends the process's
GPU context): the whole model with and without gradient checkpointing, one double block and one single block alone,
one of each in the model's order, with and without checkpointing, and the single block's attention with its output
made contiguous before the MLP's is set beside it. One line a variant: ok or the error. About two minutes.

  python bench/flux_kernels.py [--res 1024] [--passes 3]
  python bench/flux_kernels.py --bisect [--kernel cudnn]
  python bench/flux_kernels.py --size tiny [--bisect --kernel math]    # on the CPU: checks the script
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import torch

# variant: (double blocks, single blocks, gradient checkpointing, the single blocks' attention output made contiguous)
VARIANTS: dict[str, tuple[int | None, int | None, bool, bool]] = {
    "whole model, checkpointing": (None, None, True, False),
    "whole model, no checkpointing": (None, None, False, False),
    "one double block": (1, 0, False, False),
    "one single block": (0, 1, False, False),
    "one of each": (1, 1, False, False),
    "one of each, checkpointing": (1, 1, True, False),
    "one of each, single output contiguous": (1, 1, False, True),
}


class _OwnGradient(torch.autograd.Function):
    """Identity forward; the backward hands on its gradient as a tensor of its own (contiguous)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def _contiguous_attention_output(model: Any) -> None:
    """The gradient that comes back to the single blocks' attention is copied out of the wider one it is a slice of
    (the attention output sits beside the MLP's), so the kernel sees the double blocks' layout (a candidate fix,
    should this variant pass)."""
    for block in model.single_transformer_blocks:
        attn = block.attn
        forward = attn.forward

        def own(*a: Any, _forward: Any = forward, **k: Any) -> Any:
            out = _forward(*a, **k)
            return _OwnGradient.apply(out) if isinstance(out, torch.Tensor) else out

        attn.forward = own


def _model(config: dict[str, Any], device: torch.device, dtype: torch.dtype, checkpointing: bool) -> Any:
    from diffusers import FluxTransformer2DModel

    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = FluxTransformer2DModel(**config)
    model.requires_grad_(False)
    if checkpointing:
        model.enable_gradient_checkpointing()
    return model


def _step(model: Any, config: dict[str, Any], res: int, text_tokens: int, device: torch.device,
          dtype: torch.dtype) -> tuple[float, bool]:
    """One forward and backward at `res` px from a random latent: (seconds, whether the input's gradient is
    finite); raises what the kernels raise."""
    from ioncannon.engine.families import family_for

    side = res // 8
    cond = {"hidden": torch.randn(1, text_tokens, config["joint_attention_dim"], device=device, dtype=dtype),
            "pooled": torch.randn(1, config["pooled_projection_dim"], device=device, dtype=dtype)}
    x = torch.randn(1, 16, side, side, device=device, dtype=dtype, requires_grad=True)
    t = time.perf_counter()
    out = family_for("flux").predict(model, x, torch.full((1,), 500.0, device=device), cond)
    out.float().square().mean().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert x.grad is not None
    return time.perf_counter() - t, bool(torch.isfinite(x.grad).all())


def variant(name: str, args: argparse.Namespace) -> int:
    """One forward and backward of a variant under args.kernel alone, in this process."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ioncannon.engine.attention import first_line
    from ioncannon.engine.families.flux import transformer_config

    tiny = args.size == "tiny"
    device = torch.device("cpu" if tiny else "cuda")
    dtype = torch.float32 if tiny else torch.bfloat16
    res, text_tokens = (64, 32) if tiny else (args.res, 512)
    double, single, checkpointing, contiguous = VARIANTS[name]
    config = transformer_config(args.size)
    config.update({k: v for k, v in (("num_layers", double), ("num_single_layers", single)) if v is not None})
    model = _model(config, device, dtype, checkpointing)
    if contiguous:
        _contiguous_attention_output(model)
    backend = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
               "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[args.kernel]
    try:
        with sdpa_kernel([backend]):
            seconds, finite = _step(model, config, res, text_tokens, device, dtype)
    except Exception as exc:  # noqa: BLE001 - the point of the script is to say so
        print(f"{name}: FAILED under {args.kernel}: {first_line(exc)}", flush=True)
        return 1
    print(f"{name}: ok under {args.kernel} in {seconds:.2f} s (grad finite: {finite})", flush=True)
    return 0


def bisect(args: argparse.Namespace) -> int:
    failed = 0
    for name in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", name, "--kernel", args.kernel, "--size", args.size,
               "--res", str(args.res)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(name)]
        print(lines[-1] if lines else f"{name}: the process exited with {proc.returncode}: "
              + " ".join(proc.stderr.split())[-300:], flush=True)
        failed += proc.returncode != 0
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, default=1024)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--size", default="real", choices=("real", "tiny"))
    ap.add_argument("--bisect", action="store_true", help="which part of the model breaks the kernel")
    ap.add_argument("--kernel", default="cudnn", choices=("cudnn", "flash", "efficient", "math"))
    ap.add_argument("--variant", default="", help=argparse.SUPPRESS)   # a child running one variant
    args = ap.parse_args()
    if args.variant:
        return variant(args.variant, args)
    if args.bisect:
        return bisect(args)
    from types import SimpleNamespace

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
    model = _model(config, device, dtype, checkpointing=True)
    for i in range(args.passes):
        try:
            seconds, finite = _step(model, config, res, text_tokens, device, dtype)
        except Exception as exc:  # noqa: BLE001 - the point of the script is to say so
            print(f"pass {i + 1}: FAILED with {attention.first_line(exc)}", flush=True)
            return 1
        print(f"pass {i + 1}: forward + backward at {res} px in {seconds:.2f} s (grad finite: {finite})", flush=True)
    if device.type == "cuda":
        print(f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, {torch.cuda.get_device_name(0)}, "
              f"torch {torch.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
