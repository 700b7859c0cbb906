"""How long a training checkpoint holds up the training loop: the synchronous save against the background writer.

Saves checkpoints of a flat parameter set of --params million parameters (fp32 weights + two fp32 Adam moments,
like a full fine-tune; SD1.5's UNet is 860) on the GPU when there is one, else on the CPU. Prints the seconds
the caller is blocked per save: `CheckpointStore.save` (write, fsync and hash in the caller), and, where this
checkout has it, `CheckpointWriter.submit` (snapshot to host memory; the write runs in a thread) with the
background write's own duration. Run it from another checkout (PYTHONPATH) to measure that one's saves.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=float, default=100.0, help="million trainable parameters")
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--between", type=float, default=8.0,
                        help="seconds of training between saves (200 steps at 25 steps/s: 8)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder)")
    args = parser.parse_args()

    import torch

    from ioncannon.engine.train import checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = int(args.params * 1e6)
    chunk = 4 * 2**20  # many tensors, as a real model has hundreds
    flat = torch.randn(n, device=device)
    weights = {f"w{i}": flat[i:i + chunk] for i in range(0, n, chunk)}
    optimizer = {"opt.m": torch.randn(n, device=device), "opt.v": torch.rand(n, device=device),
                 "opt.step": torch.tensor(1.0, device=device)}
    gib = (3 * n * 4) / 2**30
    root = Path(tempfile.mkdtemp(dir=args.dir, prefix="ckpt-bench-"))
    try:
        store = checkpoint.CheckpointStore(root / "sync", keep=2)
        sync = []
        for step in range(1, args.saves + 1):
            t = time.perf_counter()
            store.save(step, weights, optimizer, {"note": "bench"})
            sync.append(round(time.perf_counter() - t, 2))
        row = {"device": str(device), "gib_per_checkpoint": round(gib, 2), "sync_save_s": sync}
        writer_cls = getattr(checkpoint, "CheckpointWriter", None)
        if writer_cls is not None:
            writer = writer_cls(checkpoint.CheckpointStore(root / "background", keep=2))
            writer.prepare(weights, optimizer)
            stalls = []
            for step in range(1, args.saves + 1):
                t = time.perf_counter()
                writer.submit(step, weights, optimizer, {"note": "bench"})
                stalls.append(round(time.perf_counter() - t, 3))
                flat.add_(1.0)  # the training step goes on meanwhile (in place, as the real one)
                time.sleep(args.between)  # the steps between two checkpoints
            writer.wait()
            row.update(background_stall_s=stalls, background_write_s=writer.write_s,
                       pinned=bool(getattr(writer, "_weights", None) and writer._weights.pinned))
        print("RESULT " + json.dumps(row), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
