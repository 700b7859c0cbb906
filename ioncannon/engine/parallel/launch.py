"""Several GPUs: run a parallel stage as one process per GPU and relay the workers' events to the runner."""

from __future__ import annotations

import logging
import os
import queue as queue_module
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ioncannon.engine.context import StageContext
from ioncannon.engine.parallel.collectives import agreed_stop, init_group
from ioncannon.job.errors import StageError, StopRequested
from ioncannon.job.events import Event, Message, Progress, SampleReady
from ioncannon.job.stages import load
from ioncannon.job.stages import stage as stage_info

StageFunction = Callable[[StageContext], None]

_POLL_S = 0.02
_GRACE_S = 10.0        # after one rank fails, the others get this long to notice before they are killed
_COLLECTIVE_TIMEOUT_S = 1800   # rank 0 alone writes multi-GB checkpoints while the others wait in a collective


# --------------------------------------------------------------------------- the launch


def processes_for(ctx: StageContext) -> int:
    """How many processes the plan asks for, capped by the visible GPUs (CPU runs use gloo, as asked)."""
    asked = max(1, int(getattr(ctx.spec.train, "num_processes", 1) or 1))
    if asked == 1:
        return 1
    if ctx.device.type == "cuda":
        return max(1, min(asked, torch.cuda.device_count()))
    return asked


def across_processes(stage: str, fn: StageFunction) -> StageFunction:
    """`fn` itself, or a launcher that runs it once per GPU when the plan asks for several processes."""
    if not stage_info(stage).parallel:
        return fn

    def run(ctx: StageContext) -> None:
        n = processes_for(ctx)
        asked = int(getattr(ctx.spec.train, "num_processes", 1) or 1)
        if n < asked and _has_work(stage, ctx):
            ctx.emit(Message("warning", f"The plan asks for {asked} GPUs but {n} is visible; running on {n}."))
        if n <= 1 or not _has_work(stage, ctx):
            fn(ctx)  # nothing to spread: the stage reuses its finished work in this process
            return
        launch(stage, ctx, n)

    return run


def _has_work(stage: str, ctx: StageContext) -> bool:
    return int(load(stage_info(stage).work_left)(ctx)) > 0


@dataclass(frozen=True)
class _Launch:
    """What a worker needs to rebuild the stage's context in its own process (pickled through spawn)."""

    stage: str
    spec: Any
    job_root: str
    workdir: str
    device_type: str
    world: int
    port: int
    threads: int
    parent_pid: int
    stage_kwargs: dict[str, Any]


@dataclass
class _Outcome:
    kind: str            # done | stopped | error | oom | crash
    message: str = ""
    hint: str = ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(stage: str, ctx: StageContext, n: int, stage_kwargs: dict[str, Any] | None = None) -> None:
    """Run `stage` in `n` processes (rank r on GPU r), relay their events, then finish the stage once.

    `stage_kwargs` go to every rank's stage function (e.g. a picklable `components` factory for benchmarks).
    Training that runs out of GPU memory steps down to the leaner plan and is launched again.
    """
    info = stage_info(stage)
    while True:
        outcome = _launch_once(stage, ctx, n, stage_kwargs or {})
        if outcome.kind == "oom" and info.step_down:
            load(info.step_down)(ctx)  # every launch loads its model afresh, so the leaner plan can start clean
            continue
        break
    if outcome.kind == "stopped":
        raise StopRequested()
    if outcome.kind == "oom":
        raise StageError(f"Out of GPU memory while generating on {n} GPUs.",
                         "Lower the generation batch size, or close other programs using the GPUs (`nvidia-smi`).")
    if outcome.kind != "done":
        raise StageError(outcome.message, outcome.hint or f"The details are in {ctx.paths.log_file}; resume to retry.")
    if info.finish:
        load(info.finish)(ctx)


def _start_method() -> Any:
    """A fork server that has imported torch, diffusers and the stages once: every later launch forks warm
    workers in a fraction of a second. It never touches CUDA, so each worker initialises its own GPU."""
    import multiprocessing as mp

    spawn = mp.get_context("forkserver")
    main = sys.modules.get("__main__")
    # "__main__" lets a launch pass functions of the calling script (a benchmark's model factory)
    main_file = getattr(main, "__file__", None)
    preload = (["__main__"] if main_file and os.path.isfile(main_file) else []) + list(_PRELOAD)
    spawn.set_forkserver_preload(preload)
    return spawn


_PRELOAD = (
    "torch",
    "torch.distributed",
    "ioncannon.engine.parallel.launch",
    "ioncannon.engine.stages",
    "ioncannon.engine.train.loop",
    "ioncannon.engine.generate.stage",
    "ioncannon.engine.models.load",
    "diffusers.models.unets.unet_2d_condition",
    "diffusers.models.autoencoders.autoencoder_kl",
    "transformers.models.clip.modeling_clip",
)


def _launch_once(stage: str, ctx: StageContext, n: int, stage_kwargs: dict[str, Any]) -> _Outcome:
    spawn = _start_method()
    events: Any = spawn.Queue()
    stop = spawn.Event()
    threads = max(1, (os.cpu_count() or 1) // n)  # n processes share the cores instead of each taking all of them
    job = _Launch(stage, ctx.spec, str(ctx.paths.root), str(ctx.workdir), ctx.device.type, n, _free_port(), threads,
                  os.getpid(), stage_kwargs)
    ctx.log.info("%s: launching %d processes (%s)", stage, n, "nccl" if ctx.device.type == "cuda" else "gloo")
    procs = [spawn.Process(target=_worker, args=(rank, job, events, stop), name=f"ioncannon-{stage}-{rank}")
             for rank in range(n)]
    for p in procs:
        p.start()
    outcomes: dict[int, _Outcome] = {}
    progress: dict[int, Progress] = {}
    failed_at: float | None = None
    try:
        while len(outcomes) < n:
            try:
                item = events.get(timeout=_POLL_S)
            except queue_module.Empty:
                item = None
            if item is not None:
                kind, rank, payload = item
                if kind == "event":
                    _relay(ctx, stage, rank, payload, progress)
                else:
                    outcomes[rank] = payload
                    if payload.kind not in ("done", "stopped") and failed_at is None:
                        failed_at = time.monotonic()
                continue
            if ctx.should_stop():
                stop.set()
            for rank, p in enumerate(procs):
                if rank not in outcomes and not p.is_alive() and events.empty():
                    outcomes[rank] = _Outcome(
                        "crash", f"The {stage} process for GPU {rank} died (exit code {p.exitcode})."
                    )
                    failed_at = failed_at or time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > _GRACE_S:
                break  # the survivors are stuck in a collective waiting for the dead rank
    finally:
        for p in procs:
            if p.is_alive() and failed_at is not None:
                p.kill()
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
        events.close()
    return _pick(outcomes, n, stage)


def _pick(outcomes: dict[int, _Outcome], n: int, stage: str) -> _Outcome:
    """The outcome that explains the run: a user-fixable error beats out-of-memory beats a crash beats a stop."""
    found = [outcomes.get(r, _Outcome("crash", f"The {stage} process for GPU {r} did not finish.")) for r in range(n)]
    for kind in ("error", "oom", "crash", "stopped"):
        for o in found:
            if o.kind == kind:
                return o
    return _Outcome("done")


def _relay(ctx: StageContext, stage: str, rank: int, event: Event, progress: dict[int, Progress]) -> None:
    if stage == "train" or not isinstance(event, Progress):
        ctx.emit(event)
        return
    # each image rank reports its own shard; the screen shows the whole stage
    progress[rank] = event
    parts = list(progress.values())
    etas = [p.eta_s for p in parts if p.eta_s is not None]
    ctx.emit(Progress(stage=event.stage, done=sum(p.done for p in parts), total=sum(p.total for p in parts),
                      rate=sum(p.rate for p in parts), eta_s=max(etas) if etas else None, label=event.label))


# --------------------------------------------------------------------------- the worker


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies: the fork server exits with the runner (kill -9
    included), so no orphan keeps a GPU busy or writes into a job another runner has taken over."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_log(rank: int) -> logging.Logger:
    log = logging.getLogger("ioncannon")
    log.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)  # inherited from the runner: runner.log
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [gpu {rank}] %(message)s"))
    log.handlers = [handler]
    return log


def _worker(rank: int, job: _Launch, events: Any, stop: Any) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the runner decides when to stop, and tells every rank
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(job.world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(job.port), IONCANNON_RANK=str(rank), IONCANNON_WORLD_SIZE=str(job.world))
    torch.set_num_threads(job.threads)
    log = _worker_log(rank)
    if job.device_type == "cuda":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        device = torch.device("cpu")

    def emit(event: Event) -> None:
        # training reports through rank 0 alone; image ranks each report their own images and progress
        if rank == 0 or (job.stage != "train" and isinstance(event, (Progress, SampleReady))):
            events.put(("event", rank, event))

    def local_stop() -> bool:
        return stop.is_set() or not _alive(job.parent_pid)

    outcome = _Outcome("done")
    try:
        should_stop = local_stop
        if job.stage == "train":
            init_group(rank, job.world, device, _COLLECTIVE_TIMEOUT_S)
            should_stop = agreed_stop(local_stop)
        from ioncannon.job.paths import JobPaths

        ctx = StageContext(job.spec, JobPaths(job.job_root), Path(job.workdir), emit, should_stop, device, log)
        load(stage_info(job.stage).run)(ctx, **job.stage_kwargs)
    except StopRequested:
        outcome = _Outcome("stopped")
    except StageError as exc:
        log.error("%s failed: %s\n%s", job.stage, exc.message, traceback.format_exc())
        outcome = _Outcome("error", exc.message, exc.hint)
    except torch.OutOfMemoryError as exc:
        log.warning("out of GPU memory: %s", exc, exc_info=True)
        outcome = _Outcome("oom", str(exc))
    except BaseException as exc:  # the traceback goes to the log, a sentence to the user
        log.error("%s crashed:\n%s", job.stage, traceback.format_exc())
        outcome = _Outcome("crash", f"{job.stage} stopped on GPU {rank} on an unexpected error: "
                                    f"{type(exc).__name__}: {exc}"[:400])
    events.put(("outcome", rank, outcome))
    if dist.is_initialized() and outcome.kind == "done":
        dist.destroy_process_group()  # a failed rank skips this: destroying it would wait for peers that hang
    events.close()
    events.join_thread()
