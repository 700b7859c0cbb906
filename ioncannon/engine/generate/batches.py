"""Work lists of images to make, rendered batch by batch with atomic PNG writes, progress and stop checks."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ioncannon.engine.generate.sampler import ImageSampler
from ioncannon.job.events import Emit, Progress, SampleReady
from ioncannon.job.fsio import atomic_write_bytes
from ioncannon.job.outputs import ImageJob


def write_png(path: Path, pixels: np.ndarray) -> None:
    buf = io.BytesIO()
    # level 3 is ~3x faster than the default and only a few percent larger
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=3)
    atomic_write_bytes(path, buf.getvalue())


def fixed_batches(jobs: list[ImageJob], batch_size: int) -> list[list[ImageJob]]:
    """Split into batches whose membership depends only on the list, so a resumed run recomputes identically."""
    size = max(1, batch_size)
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def shard(batches: list[list[ImageJob]], rank: int, world: int) -> list[list[ImageJob]]:
    """Rank `rank`'s share of whole batches (every world-th one): disjoint, complete, and each batch is the
    same as one process would make, so a shard's pixels equal the single-process ones."""
    return batches[rank::world]


def render(
    sampler: ImageSampler,
    batches: list[list[ImageJob]],
    *,
    stage: str,
    emit: Emit,
    check_stop: Callable[[], None],
    announce: bool = True,
    on_batch_written: Callable[[list[ImageJob]], None] | None = None,
    already_done: int = 0,
) -> int:
    """Make every batch that still misses an image; return how many images were written.

    `already_done` counts finished images outside `batches` (e.g. reused from a cache) in the progress; its rate is
    the steady one, after the first batch.
    PNG encoding runs on worker threads so the GPU starts the next batch meanwhile; each batch's files
    are on disk before its progress event, and before a stop request is honoured.
    """
    total = already_done + sum(len(b) for b in batches)
    done = already_done + sum(1 for b in batches for job in b if job.path.exists())
    todo = [b for b in batches if any(not job.path.exists() for job in b)]
    made = 0
    start = time.perf_counter()
    # the steady rate leaves out the first batch (first kernels, autotuning, a compile's warm-up): the images drawn
    # since it was drawn, over the time since. A batch's progress is told when the next one has been drawn (its PNGs
    # are written meanwhile), so a rate from progress events alone would overstate it.
    first: tuple[float, int] | None = None
    drawn = 0
    emit(Progress(stage=stage, done=done, total=total, label=todo[0][0].label if todo else ""))
    sampler.prepare([j.prompt for b in todo for j in b], [j.negative for b in todo for j in b])
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="png") as pool:
        pending: list[tuple[list[ImageJob], list[Future[None]]]] = []

        def settle() -> None:
            nonlocal done, made
            for batch, futures in pending:
                for job, fut in zip(batch, futures, strict=True):
                    fut.result()
                    done += 1
                    made += 1
                    if announce:
                        emit(SampleReady(stage=stage, path=str(job.path), label=job.label))
                if on_batch_written is not None:
                    on_batch_written(batch)
                now = time.perf_counter()
                rate = ((drawn - first[1]) / max(now - first[0], 1e-9) if first is not None and drawn > first[1]
                        else made / max(now - start, 1e-9))
                eta = (total - done) / rate if rate > 0 else None
                emit(Progress(stage=stage, done=done, total=total, rate=rate, eta_s=eta, label=batch[-1].label))
            pending.clear()

        for batch in todo:
            pixels = sampler.sample([j.prompt for j in batch], [j.negative for j in batch], [j.seed for j in batch])
            missing = [(job, img) for job, img in zip(batch, pixels, strict=True) if not job.path.exists()]
            drawn += len(missing)
            if first is None:
                first = (time.perf_counter(), drawn)
            settle()
            pending.append(
                ([job for job, _ in missing], [pool.submit(write_png, job.path, img) for job, img in missing])
            )
            try:
                check_stop()
            except BaseException:
                settle()
                raise
        settle()
    return made
