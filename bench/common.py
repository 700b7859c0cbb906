"""Pieces the GPU benchmarks share: random photos, a peak-memory poller for processes we do not instrument, and
diffusers' own training scripts run with their step bar timed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PEAK_FLOPS = 989e12  # H100/H200 dense bf16
PROMPT = "a professional portrait photograph of sks man, 85mm lens, soft studio lighting"


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
    """Peak GPU memory of one process, polled from nvidia-smi (for a script we do not instrument)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                ).stdout
                for line in out.strip().splitlines():
                    pid, used = (int(x) for x in line.split(","))
                    if pid == self.pid:
                        self.peak_mib = max(self.peak_mib, used)
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.25)

    def __enter__(self) -> SmiPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
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


def run_diffusers_script(script: Path, args: list[str], workdir: Path, timeout: float) -> dict[str, Any]:
    """diffusers' `script` with `args`: steady steps/s from its step bar, torch's and nvidia-smi's peak GiB.

    The row has `error` (the log's tail) when the script made fewer than 3 steps.
    """
    wrapper = workdir / "timed_script.py"
    wrapper.write_text(_WRAPPER, encoding="utf-8")
    logfile = workdir / "diffusers.log"
    t = time.perf_counter()
    with open(logfile, "w") as fh:
        proc = subprocess.Popen([sys.executable, str(wrapper), str(script), *args], stdout=fh,
                                stderr=subprocess.STDOUT, text=True)
        with SmiPeak(proc.pid) as smi:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    out = logfile.read_text(errors="replace")
    line = next((ln for ln in out.splitlines() if ln.startswith("DIFFUSERS ")), None)
    row: dict[str, Any] = {"phase": "diffusers-lora", "wall_s": round(time.perf_counter() - t, 1),
                           "smi_peak_gib": round(smi.peak_mib / 1024, 2)}
    if line is None or json.loads(line[10:])["steps"] < 3:
        row["error"] = out[-3000:]
    else:
        row.update(json.loads(line[10:]))
    return row
