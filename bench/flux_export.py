"""Flux's LoRA export at FLUX.1-dev's real shape, on the CPU: the export stage's time and what it adds to the
process's peak memory. The export reads the trained adapters onto a weightless skeleton of the transformer, so the
base weights are never read; this builds a model folder holding only the transformer's config, and random rank-N
adapters on every layer Flux trains, published as the training stage publishes them.

  python bench/flux_export.py [--rank 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # kB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from diffusers import FluxTransformer2DModel
    from peft.utils import get_peft_model_state_dict

    from ioncannon.engine.context import StageContext
    from ioncannon.engine.export import export_targets, run_export
    from ioncannon.engine.families.flux import LORA_TARGETS, transformer_config
    from ioncannon.engine.weights.trained import attach_lora, lora_info, publish_trained
    from ioncannon.job.paths import JobPaths
    from ioncannon.job.plan.presets import demo_plan_for
    from ioncannon.job.spec import JobSpec, save_spec

    work = Path(tempfile.mkdtemp(prefix="ioncannon-flux-export-"))
    model_dir = work / "FLUX.1-dev"
    with torch.device("meta"):
        model = FluxTransformer2DModel(**transformer_config("real"))
    model.save_config(str(model_dir / "transformer"))
    attach_lora(model, args.rank, args.rank, LORA_TARGETS)
    torch.manual_seed(0)
    for name, sub in model.named_modules():   # the adapters alone get memory, as training leaves them
        if ".lora_" in name and any(p.is_meta for p in sub.parameters(recurse=False)):
            sub.to_empty(device="cpu", recurse=False)
            torch.nn.init.normal_(sub.weight, std=0.01)
    state = get_peft_model_state_dict(model)
    del model
    params = sum(v.numel() for v in state.values())
    spec = JobSpec(name="export", photos_dir=str(work / "photos"), identifier="zq", class_name="person",
                   base_model=str(model_dir), family="flux", resolution=1024, device="cpu",
                   train=demo_plan_for("flux"))
    paths = JobPaths(work / "job")
    save_spec(paths, spec)
    publish_trained(paths, mode="lora", steps=1, base_model=spec.base_model, unet_state=state,
                    lora=lora_info(args.rank, args.rank, unet_targets=LORA_TARGETS))
    del state
    before = peak_gib()
    ctx = StageContext(spec=spec, paths=paths, workdir=work, emit=lambda event: None, should_stop=lambda: False)
    t = time.perf_counter()
    run_export(ctx)
    seconds = time.perf_counter() - t
    targets = export_targets(spec, paths)
    files = [targets.lora_kohya, *sorted(targets.lora_diffusers.iterdir())]
    print(f"FLUX.1-dev LoRA export, rank {args.rank} ({params / 1e6:.1f} M adapter parameters), "
          f"{args.threads} thread(s): {seconds:.1f} s; peak memory {before:.2f} GiB before the stage, "
          f"{peak_gib():.2f} GiB after")
    for f in files:
        print(f"  {f.name}: {f.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
