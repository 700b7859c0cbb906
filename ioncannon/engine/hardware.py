"""Probe the box: GPUs with free memory, disk, CPUs and RAM, as the planner's plain data (job/plan/box.py)."""

from __future__ import annotations

import os
from pathlib import Path

from ioncannon.job.fsio import free_bytes
from ioncannon.job.plan.box import GpuInfo, HardwareInfo

__all__ = ["probe"]


def _gib(n: float) -> float:
    return round(n / 2**30, 2)


def probe(workdir: str | Path, demo: bool = False, family: str | None = None) -> HardwareInfo:
    """What this machine has: GPUs with free memory, free disk under `workdir`, CPUs and RAM; for the demo, how long
    a tiny training step of `family` (default: the first) takes here now. Never raises."""
    gpus: list[GpuInfo] = []
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                gpus.append(GpuInfo(i, torch.cuda.get_device_name(i), _gib(total), _gib(free)))
    except Exception:
        gpus = []
    try:
        disk = _gib(free_bytes(workdir))
    except Exception:
        disk = 0.0
    try:
        ram = _gib(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        ram = 0.0
    step_s = None
    if demo:
        try:
            from ioncannon.engine.demo import measure_step_s

            step_s = measure_step_s(family)
        except Exception:  # a family whose denoiser the quick pass cannot drive (Flux) keeps the fixed plan
            step_s = None
    return HardwareInfo(gpus=gpus, disk_free_gib=disk, cpu_count=os.cpu_count() or 1, ram_gib=ram,
                        demo_step_s=step_s)
