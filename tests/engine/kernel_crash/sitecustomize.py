"""Loaded by a runner started with this folder on PYTHONPATH: training's first step crashes in a GPU kernel while
the flash attention kernel is in use, as cuDNN's attention crashed inside Flux on torch 2.11. Once flash is marked
broken, the restarted runner chooses math, and training runs."""

from __future__ import annotations

import os

if os.environ.get("IONCANNON_PLANT_KERNEL_CRASH") == "flash":
    import ioncannon.engine.attention as _attention

    _real_use = _attention.use_for_stage

    def _use_for_stage(ctx, shapes, dtype, backward, left_out=None):  # type: ignore[no-untyped-def]
        choice = _real_use(ctx, shapes, dtype, backward, left_out)
        if backward and choice.backend == "flash":
            raise RuntimeError("CUDA error: an illegal memory access was encountered\n"
                               "CUDA kernel errors might be asynchronously reported at some other API call")
        return choice

    _attention.use_for_stage = _use_for_stage
