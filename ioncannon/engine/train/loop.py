"""The training stage: DreamBooth with prior preservation, resumable, with live progress, previews and OOM step-down."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from ioncannon.engine.attention import use_for_stage as use_attention
from ioncannon.engine.compile_cache import compile_root, use_compile_cache
from ioncannon.engine.context import StageContext
from ioncannon.engine.families import family_for
from ioncannon.engine.generate.batches import write_png
from ioncannon.engine.models.load import release
from ioncannon.engine.parallel.collectives import broadcast_from_first, process_rank, sync_rng_from_first
from ioncannon.engine.train.cache import TrainCache, base_model_key, load_cache, run_cache
from ioncannon.engine.train.checkpoint import (
    CheckpointStore,
    CheckpointWriter,
    LoadedCheckpoint,
    capture_rng,
    restore_rng,
)
from ioncannon.engine.train.preview import render_preview
from ioncannon.engine.train.step import Trainer, is_finite
from ioncannon.engine.weights.trained import lora_info, publish_trained, trained_info
from ioncannon.job.errors import StageError, StopRequested
from ioncannon.job.events import CheckpointSaved, Message, Progress, SampleReady
from ioncannon.job.fsio import StateFileError, read_json, write_json
from ioncannon.job.plan.memory import profile_label, step_down
from ioncannon.job.plans import TrainPlan
from ioncannon.job.units import count

__all__ = ["run_cache", "run_training", "active_plan", "training_finished", "step_down_after_oom"]

ComponentSource = Any  # Components, a zero-argument factory returning them, or None (load spec.base_model)
_PROGRESS_EVERY_S = 0.25
_GPU_SYNC_EVERY = 8      # read losses back every few steps: a host sync per step would stall the GPU queue
_HISTORY = 2000


def _plan_file(ctx: StageContext) -> Any:
    return ctx.paths.train_plan_file


def active_plan(ctx: StageContext) -> TrainPlan:
    """The job's plan, or the leaner one training stepped down to after running out of GPU memory."""
    try:
        saved = read_json(_plan_file(ctx))
        return TrainPlan(
            **{k: v for k, v in saved["plan"].items() if k in {f.name for f in dataclasses.fields(TrainPlan)}}
        )
    except (StateFileError, KeyError, TypeError):
        return ctx.spec.train


def _components(source: ComponentSource, ctx: StageContext) -> Any:
    if source is None:
        from ioncannon.engine.families import family_for

        held = ctx.take(base_model_key(ctx))  # loaded by the cache stage of this process: no second load
        if held is not None:
            ctx.log.info("training reuses the base model the cache stage loaded")
            return held
        family = family_for(ctx.spec.family)
        return family.load(ctx.spec.base_model, dtype=family.working_dtype(ctx.dtype))
    return source() if callable(source) else source


def training_finished(ctx: StageContext) -> bool:
    """True once weights for this plan's steps and base model are published."""
    info = trained_info(ctx.paths)
    return bool(info and info["steps"] >= active_plan(ctx).steps and info["base_model"] == ctx.spec.base_model)


def steps_left(ctx: StageContext) -> int:
    """Steps still to train (0 once the weights are published); the launcher skips a launch at 0."""
    return 0 if training_finished(ctx) else active_plan(ctx).steps


def run_training(ctx: StageContext, components: ComponentSource = None) -> None:
    """The stage: train (or resume) until plan.steps, then publish the weights to `.ioncannon/trained/`."""
    plan = active_plan(ctx)
    store = CheckpointStore(ctx.paths.checkpoints, plan.keep_checkpoints, ctx.emit, ctx.log)
    rank, world = process_rank()  # several GPUs: rank 0 alone writes files
    if training_finished(ctx):
        if rank == 0:
            store.clear()  # a kill between publishing and cleaning up left them behind
        ctx.emit(Message("info", "Training already finished; using the trained weights."))
        return
    cache = load_cache(ctx)
    if cache is None:
        raise StageError("The latent cache is missing or out of date.", "Resume the job so the cache stage runs again.")
    if ctx.device.type == "cuda" and plan.compile:
        use_compile_cache(compile_root(ctx.shared_cache))  # a resumed or repeated job finds the kernels built
    while True:
        out_of_memory = False
        comps = _components(components, ctx)
        family = family_for(comps.family)
        use_attention(ctx, family.attention_shapes(comps, ctx.spec.resolution),
                      family.attention_dtype(ctx.dtype), backward=True, left_out=family.attention_left_out(True))
        try:
            _train(ctx, comps, cache, plan, store)
            return
        except torch.OutOfMemoryError:
            ctx.log.warning("out of GPU memory with plan %s", plan, exc_info=True)
            if world > 1:
                raise  # the other ranks wait in a collective: the launcher stops them all and steps down
            out_of_memory = True
        if out_of_memory:  # outside the except block, so the traceback's tensors can be freed
            del comps
            release(ctx.device)
            plan = _step_down(ctx, plan, store, reloadable=components is None or callable(components))


def step_down_after_oom(ctx: StageContext) -> TrainPlan:
    """Record the next leaner plan after a multi-GPU launch ran out of memory (StageError when none is left)."""
    plan = active_plan(ctx)
    return _step_down(ctx, plan, CheckpointStore(ctx.paths.checkpoints, plan.keep_checkpoints, ctx.emit, ctx.log), True)


def _step_down(ctx: StageContext, plan: TrainPlan, store: CheckpointStore, reloadable: bool) -> TrainPlan:
    family = ctx.spec.family
    nxt = step_down(plan, family)
    if nxt is None or not reloadable:
        raise StageError(
            f"Out of GPU memory even with the leanest {plan.mode} plan ({profile_label(plan, family)}).",
            "Close other programs using the GPU (`nvidia-smi` lists them), pick LoRA, or rent a larger card.",
        )
    last = store.published()
    at = last[0][0] if last else 0
    ctx.emit(Message("warning", f"Out of GPU memory with '{profile_label(plan, family)}'; switching to "
                                f"'{profile_label(nxt, family)}' and resuming from step {at}."))
    write_json(_plan_file(ctx), {"plan": dataclasses.asdict(nxt)})
    return nxt


def _accept(trainer: Trainer, base_model: str) -> Callable[[LoadedCheckpoint], str]:
    layout = trainer.layout()

    def check(ckpt: LoadedCheckpoint) -> str:
        saved = ckpt.state.get("layout", {})
        if ckpt.state.get("base_model") != base_model:
            return "it was trained from a different base model"
        if saved.get("names") != layout["names"] or saved.get("numels") != layout["numels"]:
            return f"it belongs to a different training mode ({saved.get('mode')})"
        return ""

    return check


class _Live:
    """Loss history, rate, throttled Progress events and timing stats of one training attempt."""

    def __init__(self, ctx: StageContext, total: int, start: int, history: list[float]) -> None:
        self.ctx, self.total, self.start = ctx, total, start
        self.history = history
        self.last_emit = 0.0
        self.rate = 0.0
        self.ema: float | None = None
        self.mark_t = time.perf_counter()
        self.mark_step = start
        self.paused = 0.0          # seconds spent on checkpoints and previews, kept out of the rate
        self.steady_from: tuple[float, int, float] | None = None

    def record(self, step_done: int, losses: list[float]) -> None:
        for v in losses:
            self.ema = v if self.ema is None else 0.9 * self.ema + 0.1 * v
        self.history.extend(losses)
        del self.history[:-_HISTORY]
        now = time.perf_counter()
        dt = now - self.mark_t
        if dt > 0 and step_done > self.mark_step:
            inst = (step_done - self.mark_step) / dt
            self.rate = inst if self.rate == 0 else 0.7 * self.rate + 0.3 * inst
        self.mark_t, self.mark_step = now, step_done
        if now - self.last_emit >= _PROGRESS_EVERY_S or step_done == self.total:
            self.last_emit = now
            eta = (self.total - step_done) / self.rate if self.rate > 0 else None
            self.ctx.emit(Progress(stage="train", done=step_done, total=self.total, rate=round(self.rate, 3),
                                   eta_s=None if eta is None else round(eta, 1), loss=self.ema, label="training"))


def _check_finite(
    ctx: StageContext, losses: list[float], step_done: int, plan: TrainPlan, store: CheckpointStore
) -> None:
    if is_finite(losses):
        return
    last = store.published()
    where = f"the checkpoint at step {last[0][0]}" if last else "the start"
    bad = next(v for v in losses if not math.isfinite(v))
    if step_done <= len(losses):
        message = (f"The training loss was {bad} from the first step: the base model or the cached latents contain "
                   "NaN/inf values (a damaged model file, or an fp16 VAE that overflowed).")
        hint = "Try another copy of the base model; resume retries from " + where + "."
    else:
        message = (f"Training diverged: the loss became {bad} around step {step_done} (learning rate "
                   f"{plan.learning_rate:g}, {plan.precision}). The weights since then are garbage and were not saved.")
        hint = f"Lower the learning rate or use the classic preset; resuming restarts from {where}."
    raise StageError(message, hint)


def _train(ctx: StageContext, comps: Any, cache: TrainCache, plan: TrainPlan, store: CheckpointStore) -> None:
    spec, device = ctx.spec, ctx.device
    stats: dict[str, Any] = {"plan": dataclasses.asdict(plan), "device": str(device)}
    t0 = time.perf_counter()
    trainer = Trainer(comps, plan, cache, device, ctx.log)
    first = trainer.rank == 0
    if first:
        store.clean_staging()
    ckpt = store.load_latest(accept=_accept(trainer, spec.base_model))
    start, history = 0, []
    if ckpt is not None:
        trainer.load_weights(ckpt.weights)
        trainer.load_optimizer(ckpt.optimizer)
        restore_rng(ckpt.optimizer, ckpt.state["rng"])
        start, history = min(ckpt.step, plan.steps), list(ckpt.state.get("loss_history", []))
        ctx.emit(Message("info", f"Resuming training at step {start} of {plan.steps}."))
        saved_world = ckpt.state.get("processes", 1)
        if saved_world != trainer.world:
            ctx.emit(Message("info", f"The checkpoint was trained on {count(saved_world, 'GPU')}, this run uses "
                                     f"{trainer.world}: the global batch changes from here on."))
    del ckpt
    if trainer.world > 1:  # every rank starts from rank 0's weights and random state, as DDP does
        broadcast_from_first([trainer.flat.data])
        sync_rng_from_first(device)
    vae_dtype = trainer.family.vae_dtype(trainer.weight_dtype)
    vae = comps.vae.to(device=device, dtype=vae_dtype) if plan.sample_every > 0 and first else None
    if device.type == "cuda":
        torch.cuda.synchronize()
    stats["setup_s"] = round(time.perf_counter() - t0, 2)
    total = plan.steps
    live = _Live(ctx, total, start, history)
    first_t = time.perf_counter()
    warm_steps = 3 if device.type == "cuda" else 1
    writer = CheckpointWriter(store, ctx.log) if first else None
    if writer is not None and plan.checkpoint_every > 0:
        writer.prepare(*_checkpoint_tensors(trainer))
    try:
        _steps(ctx, trainer, plan, store, writer, live, stats, vae, cache, start, first_t, warm_steps)
        if writer is not None:
            writer.wait()
            _announce(ctx, writer)
    finally:
        if writer is not None:
            writer.close()  # a crash or OOM must not leave a write racing the retry or the clean-up
            stats["checkpoint_write_s"] = writer.write_s
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    if live.steady_from is not None and total > live.steady_from[1]:
        t_s, step_s, paused_s = live.steady_from
        stats["steady_steps_per_s"] = round((total - step_s) / max(end - t_s - (live.paused - paused_s), 1e-9), 3)
    stats.update(train_s=round(end - first_t, 2), steps=total - start, mode=trainer.mode,
                 checkpoint_keeps=trainer.checkpoint_keeps,
                 peak_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
                 processes=trainer.world, global_batch=plan.batch_size * trainer.world)
    if not first:
        return
    _publish(ctx, trainer, plan)
    store.clear()
    write_json(ctx.paths.train_stats_file, stats)
    ctx.log.info("training finished: %s", stats)


def _checkpoint_tensors(trainer: Trainer, rng: dict[str, torch.Tensor] | None = None
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """What a checkpoint holds as tensors: the trained weights; the optimizer moments and the RNG states.

    Every checkpoint keeps the moments, not just the newest: the older one is there for when the newest is
    damaged, and resuming it without its moments would no longer be exact.
    """
    return trainer.flat.named_tensors(), {**trainer.optimizer_tensors(), **(rng or capture_rng()[0])}


def _save(ctx: StageContext, writer: CheckpointWriter, trainer: Trainer, step: int, history: list[float]) -> None:
    rng_tensors, rng_plain = capture_rng()
    weights, optimizer = _checkpoint_tensors(trainer, rng_tensors)
    state = {"plan": dataclasses.asdict(trainer.plan), "layout": trainer.layout(), "rng": rng_plain,
             "loss_history": history[-_HISTORY:], "base_model": ctx.spec.base_model, "processes": trainer.world}
    writer.submit(step, weights, optimizer, state)


def _announce(ctx: StageContext, writer: CheckpointWriter) -> None:
    for step, path in writer.published():
        ctx.emit(CheckpointSaved(step=step, path=str(path)))


def _steps(ctx: StageContext, trainer: Trainer, plan: TrainPlan, store: CheckpointStore,
           writer: CheckpointWriter | None, live: _Live, stats: dict[str, Any], vae: Any, cache: TrainCache,
           start: int, first_t: float, warm_steps: int) -> None:
    """The step loop: train, read losses back now and then, preview, checkpoint in the background, stop."""
    device, total = ctx.device, plan.steps
    sync_every = _GPU_SYNC_EVERY if device.type == "cuda" else 1
    losses_buf = torch.zeros(sync_every, dtype=torch.float32, device=device)
    pending = 0
    last_saved = start
    step_t = first_t
    for step in range(start, total):
        loss = trainer.run_step(step)
        if step - start < warm_steps:   # each start-up step alone: first kernels, compiling, graph capture
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            stats.setdefault("first_step_each_s", []).append(round(now - step_t, 2))
            step_t = now
        losses_buf[pending].copy_(loss)
        pending += 1
        done = step + 1
        stopping = ctx.should_stop()
        ckpt_due = plan.checkpoint_due(done)
        sample_due = plan.sample_every > 0 and done % plan.sample_every == 0
        if pending == sync_every or done == total or ckpt_due or sample_due or stopping or done - start == warm_steps:
            losses = losses_buf[:pending].tolist()
            pending = 0
            _check_finite(ctx, losses, done, plan, store)
            live.record(done, losses)
            if done - start == warm_steps:
                stats["first_steps_s"] = round(time.perf_counter() - first_t, 2)
                live.steady_from = (time.perf_counter(), done, live.paused)
        if sample_due and vae is not None:
            t = time.perf_counter()
            _preview(ctx, trainer, vae, cache, done)
            live.paused += time.perf_counter() - t
            stats.setdefault("preview_s", []).append(round(time.perf_counter() - t, 2))
        if writer is not None:
            _announce(ctx, writer)
            if ckpt_due or (stopping and done != last_saved and done < total):
                t = time.perf_counter()
                _save(ctx, writer, trainer, done, live.history)
                last_saved = done
                live.paused += time.perf_counter() - t
                stats.setdefault("checkpoint_s", []).append(round(time.perf_counter() - t, 2))
        if stopping and done < total:
            if writer is not None:
                writer.wait()  # the stop's own checkpoint is on disk before the runner reports "stopped"
                _announce(ctx, writer)
            raise StopRequested()


def _preview(ctx: StageContext, trainer: Trainer, vae: Any, cache: TrainCache, step: int) -> None:
    try:
        device = ctx.device
        cond = dict(cache.instance_cond)
        if trainer.text_encoders:
            with torch.no_grad():
                tokens = {k: v.to(device) for k, v in cache.instance_tokens.items()}
                cond.update(trainer.family.encode_tokens(trainer.parts, tokens))
        pixels = render_preview(trainer.family, trainer.unet, vae, trainer.parts.noise_scheduler, cond,
                                cache.empty_cond, ctx.spec.resolution, trainer.plan.seed, device, trainer.weight_dtype)
        path = ctx.paths.previews / f"step_{step:08d}.png"
        write_png(path, pixels)
        ctx.emit(SampleReady(stage="train", path=str(path), label=ctx.spec.instance_prompt, step=step))
    except torch.OutOfMemoryError:
        raise
    except Exception:  # a preview is a nicety: never lose training over it
        ctx.log.warning("preview at step %d failed", step, exc_info=True)


def _publish(ctx: StageContext, trainer: Trainer, plan: TrainPlan) -> None:
    if plan.mode == "full":
        unet_state = trainer.unet.state_dict()
        text_states = {name: module.state_dict() for name, module in trainer.text_encoders}
        lora = None
    else:
        from peft import get_peft_model_state_dict

        unet_state = get_peft_model_state_dict(trainer.unet)
        text_states = {name: get_peft_model_state_dict(module) for name, module in trainer.text_encoders}
        lora = lora_info(plan.lora_rank, plan.lora_rank, with_text=bool(text_states),
                         unet_targets=trainer.family.lora_targets)
    publish_trained(ctx.paths, mode=plan.mode, steps=plan.steps, base_model=ctx.spec.base_model,
                    unet_state=unet_state, text_states=text_states, lora=lora)
