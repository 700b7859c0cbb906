"""Pieces the GPU benchmarks share: random photos, a peak-memory poller for processes we do not instrument, and
diffusers' own training scripts run with their step bar timed."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PEAK_FLOPS = 989e12  # H100/H200 dense bf16
DEVICE = "cuda"  # a script's --size tiny (its CPU smoke test) sets "cpu"
PROMPT = "a professional portrait photograph of sks man, 85mm lens, soft studio lighting"


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def mem(kind: str = "allocated") -> int:
    """torch.cuda's memory_allocated / max_memory_allocated / max_memory_reserved (0 on the CPU)."""
    import torch

    if DEVICE != "cuda":
        return 0
    return int({"allocated": torch.cuda.memory_allocated, "max_allocated": torch.cuda.max_memory_allocated,
                "max_reserved": torch.cuda.max_memory_reserved}[kind]())


def reset_peak() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


@contextlib.contextmanager
def levers(**values: str) -> Iterator[None]:
    """The product's levers set for the runs inside, whatever its defaults: levers(train_compile="blocks",
    checkpoint_keeps="attention") (ioncannon/engine/train/levers.py), levers(fp8_gemm="on")
    (ioncannon/engine/weights/quantise.py); "" leaves one as the product has it."""
    names = {key: f"IONCANNON_{key.upper()}" for key in values}
    before = {name: os.environ.get(name) for name in names.values()}
    for key, value in values.items():
        if value:
            os.environ[names[key]] = value
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def train_plan(parts: Any, workdir: Path, family: str, key: str, steps: int, res: int, photos: int,
               class_images: int = 0, keep_ctx: bool = False, change: dict[str, Any] | None = None) -> Any:
    """The hardware screen's plan `key` of `family` for an H200, through the product's cache and train stages on
    the built model `parts` (its denoiser off the GPU while the prompts and latents are cached).

    `change` alters the plan's fields (a bench variant: e.g. base_weights="fp8" on a roomy plan).
    Returns the plan and its row: steady steps/s, peak GiB above what was resident before training, and where the
    stages' time went (MFU is the caller's: it knows the family's FLOPs).
    """
    import dataclasses
    import tempfile

    import torch

    from ioncannon.engine.context import StageContext
    from ioncannon.engine.train.loop import run_cache, run_training
    from ioncannon.job.paths import JobPaths
    from ioncannon.job.plan.box import GpuInfo, HardwareInfo
    from ioncannon.job.plan.memory import plan_key, plan_options
    from ioncannon.job.spec import JobSpec, save_spec

    hw = HardwareInfo([GpuInfo(0, "NVIDIA H200", 139.8, 139.0)], 100.0, 16, 128.0)
    plan = next(c.plan for c in plan_options(hw, family=family) if plan_key(c.plan, family) == key)
    plan = dataclasses.replace(plan, steps=steps, checkpoint_every=0, sample_every=0, **(change or {}))
    if class_images:
        plan = dataclasses.replace(plan, num_class_images=class_images)
    root = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{key}-"))
    spec = JobSpec(name=key, photos_dir=str(root), identifier="sks", class_name="man", base_model=f"random-{family}",
                   family=family, resolution=res, device=DEVICE, train=plan)
    paths = JobPaths(root / "job")
    save_spec(paths, spec)
    random_pngs(paths.training_samples("man"), photos, 0, "sks man", res)
    if class_images:
        random_pngs(paths.class_images("man"), class_images, 1, "class", res)
    ctx = StageContext(spec=spec, paths=paths, workdir=workdir, emit=lambda e: None, should_stop=lambda: False,
                       device=torch.device(DEVICE))
    parts.unet.to("cpu")  # the cache stage needs only the VAE and the text encoders
    t = time.perf_counter()
    run_cache(ctx, parts)
    sync()
    cache_s = time.perf_counter() - t
    reset_peak()
    base = mem()
    t = time.perf_counter()
    run_training(ctx, parts)
    train_s = time.perf_counter() - t
    stats = json.loads((paths.meta / "train_stats.json").read_text())
    row = {"phase": f"ours-{key}", "steps_per_s": stats.get("steady_steps_per_s") or 0.0,
           "peak_gib": round((mem("max_allocated") - base) / 2**30, 2),
           "reserved_gib": round(mem("max_reserved") / 2**30, 2), "cache_s": round(cache_s, 1),
           "setup_s": stats.get("setup_s"), "first_steps_s": stats.get("first_steps_s"),
           "first_step_each_s": stats.get("first_step_each_s"),
           "train_s": round(train_s, 1), "mode": stats.get("mode"), "checkpoint_keeps": stats.get("checkpoint_keeps"),
           "steps": steps}
    return (plan, row, ctx) if keep_ctx else (plan, row)


def random_pngs(folder: Path, n: int, seed: int, stem: str, size: int) -> None:
    """`n` smooth random pictures of `size` px, named `stem_000.png` …"""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(folder / f"{stem}_{i:03d}.png")


class SmiPeak:
    """Peak GPU memory polled from nvidia-smi: of one process (`pid`, a script we do not instrument), or of the
    whole card (`pid=None`: a detached runner and its children)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.peak_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _read(self) -> int:
        query = "--query-gpu=memory.used" if self.pid is None else "--query-compute-apps=pid,used_memory"
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=5).stdout
        if self.pid is None:
            return max((int(x) for x in out.split()), default=0)
        rows = [[int(x) for x in line.split(",")] for line in out.strip().splitlines()]
        return max((used for pid, used in rows if pid == self.pid), default=0)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_mib = max(self.peak_mib, self._read())
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.25)

    def __enter__(self) -> SmiPeak:
        if DEVICE == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


# Runs a diffusers training script with its "Steps" bar timed; prints one DIFFUSERS {json} line at exit.
_WRAPPER = """
import atexit, json, runpy, sys, time
import tqdm.auto
stamps = []
class Timed(tqdm.auto.tqdm):
    def update(self, n=1):
        out = super().update(n)
        if self.desc == "Steps":
            stamps.append(time.perf_counter())
        return out
tqdm.auto.tqdm = Timed
import os
if "cudnn" in os.environ.get("BENCH_SDPA_OFF", ""):  # the workaround a stack with a broken cuDNN attention needs
    import torch
    torch.backends.cuda.enable_cudnn_sdp(False)
def report():
    import torch
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    skip = min(5, max(len(stamps) - 2, 0))
    rate = (len(stamps) - 1 - skip) / (stamps[-1] - stamps[skip]) if len(stamps) - skip > 1 else 0.0
    row = {"steps": len(stamps), "steps_per_s": round(rate, 3), "torch_peak_gib": round(peak, 2)}
    print("DIFFUSERS " + json.dumps(row), flush=True)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_diffusers_script(script: Path, args: list[str], workdir: Path, timeout: float,
                         cudnn_sdpa: bool = True) -> dict[str, Any]:
    """diffusers' `script` with `args`: steady steps/s from its step bar, torch's and nvidia-smi's peak GiB.

    `cudnn_sdpa=False` switches cuDNN's attention off in the script's process (on a stack where it crashes, as
    this product's own kernel test would). The row has `error` (the log's tail) when it made fewer than 3 steps.
    """
    import os
    wrapper = workdir / "timed_script.py"
    wrapper.write_text(_WRAPPER, encoding="utf-8")
    logfile = workdir / "diffusers.log"
    t = time.perf_counter()
    with open(logfile, "w") as fh:
        env = dict(os.environ, BENCH_SDPA_OFF="" if cudnn_sdpa else "cudnn")
        proc = subprocess.Popen([sys.executable, str(wrapper), str(script), *args], stdout=fh,
                                stderr=subprocess.STDOUT, text=True, env=env)
        with SmiPeak(proc.pid) as smi:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    out = logfile.read_text(errors="replace")
    line = next((ln for ln in out.splitlines() if ln.startswith("DIFFUSERS ")), None)
    row: dict[str, Any] = {"phase": "diffusers-lora", "cudnn_sdpa": cudnn_sdpa,
                           "wall_s": round(time.perf_counter() - t, 1), "smi_peak_gib": round(smi.peak_mib / 1024, 2)}
    if line is None or json.loads(line[10:])["steps"] < 3:
        row["error"] = out[-3000:]
    else:
        row.update(json.loads(line[10:]))
    return row
