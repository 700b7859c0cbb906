"""What the box is, as plain data: GPUs with free memory, disk, CPUs, RAM (the engine's probe fills it in)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_gib: float
    free_gib: float


@dataclass(frozen=True)
class HardwareInfo:
    gpus: list[GpuInfo]
    disk_free_gib: float
    cpu_count: int
    ram_gib: float
    demo_step_s: float | None = None  # a tiny-model training step measured on this machine (the demo only)

    @property
    def best_gpu(self) -> GpuInfo | None:
        return max(self.gpus, key=lambda g: g.free_gib) if self.gpus else None


# Rough bf16 training speed relative to an H100 SXM, by GPU name.
_GPU_SPEED: tuple[tuple[str, float], ...] = (
    ("H200", 1.05), ("H100", 1.0), ("GH200", 1.0), ("B200", 1.6), ("A100", 0.5), ("L40", 0.45), ("4090", 0.45),
    ("A6000", 0.3), ("3090", 0.3), ("A10", 0.2), ("4080", 0.35), ("4070", 0.22), ("L4", 0.15), ("3080", 0.25),
    ("3060", 0.12), ("V100", 0.15), ("T4", 0.06),
)


def speed_factor(name: str) -> float:
    """A card's training speed relative to an H100 (0.3 for a card the table does not name)."""
    for needle, factor in _GPU_SPEED:
        if needle.lower() in name.lower():
            return factor
    return 0.3


def margin_gib(gpu: GpuInfo) -> float:
    """Headroom beyond the training peak: the CUDA context, fragmentation and the preview decode need it."""
    return max(1.0, 0.06 * gpu.total_gib)
