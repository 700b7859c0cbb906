"""StageContext: what every stage gets — the spec, the paths, an event sink and a stop flag."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ioncannon.job.errors import StopRequested
from ioncannon.job.events import Emit
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec


@dataclass
class StageContext:
    spec: JobSpec
    paths: JobPaths
    workdir: Path                      # parent of all jobs: shared caches (class images, compiled kernels) live here
    emit: Emit
    should_stop: Callable[[], bool]    # True once a stop was requested: save progress, then raise StopRequested
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("ioncannon"))
    # what a stage loaded and the next stage in this process can use instead of loading it again
    held: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype for inference on this device (training picks its own from the plan)."""
        if self.device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if self.spec.train.precision == "bf16" else torch.float16

    @property
    def shared_cache(self) -> Path:
        return self.workdir / ".cache"

    def hold(self, key: str, value: Any) -> None:
        """Leave `value` for a later stage of this runner process (taken once, then forgotten)."""
        self.held[key] = value

    def take(self, key: str) -> Any:
        """What an earlier stage held under `key`, or None; the caller owns it from now on."""
        return self.held.pop(key, None)

    def check_stop(self) -> None:
        if self.should_stop():
            raise StopRequested()
