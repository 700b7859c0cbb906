"""One DreamBooth optimisation step over flat parameter buffers: eager, compiled, or replayed as a CUDA graph."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ioncannon.engine.compile_cache import compile_blocks, uncompile_blocks
from ioncannon.engine.parallel.collectives import all_agree, average_gradients, process_rank
from ioncannon.engine.train.cache import TrainCache
from ioncannon.engine.train.levers import checkpoint_function, checkpoint_keeps, training_compile
from ioncannon.job.plan.presets import warmup_steps
from ioncannon.job.plans import TrainPlan

_CHUNK = 1 << 26  # optimizer works in 64 Mi-element slices so eager fallbacks need no full-size fp32 temporaries
_MAX_GRAD_NORM = 1.0
_EAGER_WARMUP = 2         # real steps run eagerly before a CUDA graph is captured


class FlatParams:
    """All trainable parameters as views of one buffer (their grads of another): the optimizer is a few kernels."""

    def __init__(self, named: list[tuple[str, torch.nn.Parameter]], dtype: torch.dtype, device: torch.device) -> None:
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.numels = [p.numel() for p in self.params]
        total = sum(self.numels)
        self.data = torch.empty(total, dtype=dtype, device=device)
        self.grad = torch.zeros(total, dtype=dtype, device=device)
        offset = 0
        for p in self.params:
            src = p.detach().to(device=device, dtype=dtype)
            if not (src.is_contiguous() or src.is_contiguous(memory_format=torch.channels_last)):
                src = src.contiguous()
            view = torch.as_strided(self.data, src.shape, src.stride(), offset)
            view.copy_(src)
            p.data = view
            # backward accumulates in place into an existing .grad, so every gradient lands in the flat buffer
            p.grad = torch.as_strided(self.grad, src.shape, src.stride(), offset)
            offset += p.numel()

    def named_tensors(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in zip(self.names, self.params, strict=True)}


def _stochastic_bf16(x: torch.Tensor) -> torch.Tensor:
    # add random low bits before truncating: tiny updates survive bf16 weights on average
    bits = x.view(torch.int32)
    noise = torch.randint_like(bits, 0, 1 << 16)
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)


def adamw_update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: torch.Tensor,
                 *, lr: float, warmup: int, betas: tuple[float, float], eps: float, weight_decay: float,
                 chunk: int = _CHUNK) -> None:
    """AdamW with global-norm clipping on flat tensors; all scalars stay on the device (CUDA-graph safe)."""
    b1, b2 = betas
    step.add_(1)
    sq = torch.zeros((), dtype=torch.float32, device=grad.device)
    for i in range(0, grad.numel(), chunk):
        sq = sq + grad[i:i + chunk].float().square().sum()
    clip = torch.clamp(_MAX_GRAD_NORM / (sq.sqrt() + 1e-6), max=1.0)
    lr_t = lr * torch.clamp(step / warmup, max=1.0) if warmup > 0 else torch.full_like(step, lr)
    bc1 = 1 - b1 ** step
    bc2_sqrt = torch.sqrt(1 - b2 ** step)
    stochastic = param.dtype == torch.bfloat16
    for i in range(0, param.numel(), chunk):
        s = slice(i, i + chunk)
        g = grad[s].float() * clip
        m32 = m[s].float() * b1 + g * (1 - b1)
        v32 = v[s].float() * b2 + g * g * (1 - b2)
        m[s].copy_(m32)
        v[s].copy_(v32)
        p32 = param[s].float()
        p32 = p32 * (1 - lr_t * weight_decay) - (lr_t / bc1) * m32 / (v32.sqrt() / bc2_sqrt + eps)
        param[s].copy_(_stochastic_bf16(p32) if stochastic else p32.to(param.dtype))


@dataclass
class StepInputs:
    """Static buffers the step reads; refilled before every step so a captured CUDA graph sees new data."""

    inst_idx: torch.Tensor
    cls_idx: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor


def data_schedule(n: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """Row k = the indices step k uses: a fresh permutation every epoch, from the seed (so resume needs only k)."""
    need = steps * batch
    out = np.empty(need + n, dtype=np.int64)
    filled, epoch = 0, 0
    while filled < need:
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out[filled:filled + n] = perm
        filled += n
        epoch += 1
    return out[:need].reshape(steps, batch)


class Trainer:
    """Owns the trainable modules, the flat buffers, optimizer state and the step (eager/compiled/graph)."""

    def __init__(self, components: Any, plan: TrainPlan, cache: TrainCache, device: torch.device,
                 log: logging.Logger | None = None) -> None:
        self.plan, self.cache, self.device = plan, cache, device
        self.log = log or logging.getLogger("ioncannon")
        # several GPUs: plan.batch_size is per process; the global batch is batch_size x world
        self.rank, self.world = process_rank()
        cuda = device.type == "cuda"
        self.weight_dtype = torch.bfloat16 if (cuda and plan.precision == "bf16") else torch.float32
        from ioncannon.engine.families import family_for

        self.family = family_for(components.family)
        self.parts = components
        self.unet = components.unet
        self.text_encoders: list[tuple[str, Any]] = components.text_encoders() if plan.train_text_encoder else []
        self.checkpoint_keeps = ""   # what activation checkpointing keeps besides the blocks' inputs (levers.py)
        self._prepare_modules(components)
        self.master_dtype = torch.float32 if plan.mode == "lora" else self.weight_dtype
        named = self._trainable()
        self.flat = FlatParams(named, self.master_dtype, device)
        state_dtype = torch.bfloat16 if plan.optimizer == "adamw_bf16" else torch.float32
        self.m = torch.zeros_like(self.flat.data, dtype=state_dtype)
        self.v = torch.zeros_like(self.flat.data, dtype=state_dtype)
        self.opt_step = torch.zeros((), dtype=torch.float32, device=device)
        lr, warmup = plan.learning_rate, warmup_steps(plan)
        whole = self.flat.data.numel()

        def update(
            param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: torch.Tensor
        ) -> None:
            adamw_update(param, grad, m, v, step, lr=lr, warmup=warmup, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)

        def fused_update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
                         step: torch.Tensor) -> None:
            # compiled, the whole update fuses into a couple of kernels, so no chunking is needed
            adamw_update(param, grad, m, v, step, lr=lr, warmup=warmup, betas=(0.9, 0.999), eps=1e-8,
                         weight_decay=1e-2, chunk=whole)

        self._eager_update = update
        self._update: Callable[..., None] = self._eager_update
        sched = components.noise_scheduler
        self.scheduler_config = dict(sched.config)
        latent_hw = tuple(cache.instance_mean.shape[-2:])
        self.objective = self.family.objective(sched, device, latent_hw=latent_hw)
        self._setup_data()
        self.loss_out = torch.zeros((), dtype=torch.float32, device=device)
        self._forward: Callable[..., Any] = self.unet
        self.mode = "eager"
        self._graph: torch.cuda.CUDAGraph | None = None
        self._eager_steps = 0
        self._use_graph = cuda
        if self.world > 1 and os.environ.get("IONCANNON_DIST_CUDA_GRAPH") == "0":
            self._use_graph = False  # escape hatch while NCCL capture is unproven on a given driver
        if cuda and plan.compile:
            # the optimizer compiles in seconds; the denoiser as its family says (see `training_compile`)
            self._update = torch.compile(fused_update, dynamic=False)
            self.mode = "compiled-optimizer"
            scope = training_compile(self.family)
            if scope == "model":
                self._forward = torch.compile(self.unet, dynamic=False)
                self.mode = "compiled"
            elif scope == "blocks":
                compile_blocks(self.unet)
                self.mode = "compiled-optimizer+blocks"

    @property
    def text_encoder(self) -> Any:
        """The first trained text encoder, or None when the text encoders are frozen (their output is cached)."""
        return self.text_encoders[0][1] if self.text_encoders else None

    # ------------------------------------------------------------------ setup
    def _prepare_modules(self, components: Any) -> None:
        plan, dev = self.plan, self.device
        for module in (components.unet, *(m for _, m in components.text_encoders())):
            module.requires_grad_(False)
        # a LoRA run may store the frozen weights in fewer bits (block by block, as they reach the GPU); the
        # adapters go on afterwards, so they stay in full precision
        self.family.place_frozen(self.unet, plan.base_weights if plan.mode == "lora" else "plain", dev,
                                 self.weight_dtype)
        if dev.type == "cuda" and self.family.channels_last:
            self.unet.to(memory_format=torch.channels_last)
        if plan.mode == "lora":
            from ioncannon.engine.weights.trained import TEXT_LORA_TARGETS, attach_lora

            attach_lora(self.unet, plan.lora_rank, plan.lora_rank, self.family.lora_targets)
            for _, text_encoder in self.text_encoders:
                text_encoder.to(device=dev, dtype=self.weight_dtype)
                attach_lora(text_encoder, plan.lora_rank, plan.lora_rank, TEXT_LORA_TARGETS)
        else:
            self.unet.requires_grad_(True)
            for _, text_encoder in self.text_encoders:
                text_encoder.to(device=dev, dtype=self.weight_dtype)
                text_encoder.requires_grad_(True)
        if plan.gradient_checkpointing:
            self.checkpoint_keeps = checkpoint_keeps(self.family)
            self.unet.enable_gradient_checkpointing(checkpoint_function(self.checkpoint_keeps))
        self.unet.train()
        for _, text_encoder in self.text_encoders:
            text_encoder.train()

    def _trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        named = [(f"unet.{n}", p) for n, p in self.unet.named_parameters() if p.requires_grad]
        for name, text_encoder in self.text_encoders:
            named += [(f"{name}.{n}", p) for n, p in text_encoder.named_parameters() if p.requires_grad]
        return named

    def _setup_data(self) -> None:
        c, dev, plan = self.cache, self.device, self.plan
        self.prior = plan.prior_preservation and c.class_mean.shape[0] > 0
        b = plan.batch_size
        g = b * self.world  # every rank draws the global batch's schedule and noise, then keeps its own rows
        mine = slice(self.rank * b, (self.rank + 1) * b)

        def schedule(n: int, seed: int) -> torch.Tensor:
            rows_of_all = data_schedule(n, plan.steps, g, seed)
            return torch.from_numpy(np.ascontiguousarray(rows_of_all[:, mine])).to(dev)

        self.inst_schedule = schedule(c.instance_mean.shape[0], plan.seed)
        self.inst_mean = c.instance_mean.to(dev)
        rows = 2 * b if self.prior else b
        if self.prior:
            self.cls_schedule = schedule(c.class_mean.shape[0], plan.seed + 1)
            self.cls_mean = c.class_mean.to(dev)
        shape = (rows, *c.instance_mean.shape[1:])
        if self.world > 1:
            global_rows = 2 * g if self.prior else g
            self._noise_all = torch.zeros((global_rows, *shape[1:]), device=dev)
            self._t_all = torch.zeros(global_rows, dtype=self.objective.timestep_dtype, device=dev)
            own = list(range(mine.start, mine.stop)) + (
                list(range(g + mine.start, g + mine.stop)) if self.prior else []
            )
            self._own_rows = torch.tensor(own, dtype=torch.long, device=dev)
        self.inputs = StepInputs(
            inst_idx=torch.zeros(b, dtype=torch.long, device=dev), cls_idx=torch.zeros(b, dtype=torch.long, device=dev),
            noise=torch.zeros(shape, device=dev),
            timesteps=torch.zeros(rows, dtype=self.objective.timestep_dtype, device=dev),
        )

        def rows_of(instance: torch.Tensor, klass: torch.Tensor) -> torch.Tensor:
            parts = [instance.expand(b, *instance.shape[1:])]
            if self.prior:
                parts.append(klass.expand(b, *klass.shape[1:]))
            return torch.cat(parts).to(dev)

        # the conditioning of every row: instance prompt for the photos, class prompt for the class images
        self.cond = {k: rows_of(c.instance_cond[k], c.class_cond[k]).to(self.weight_dtype) for k in c.instance_cond}
        self.tokens = {k: rows_of(c.instance_tokens[k], c.class_tokens[k]) for k in c.instance_tokens}
        self._gen = torch.Generator(device=dev)

    # ------------------------------------------------------------------ the step
    def _fill_inputs(self, step: int) -> None:
        """Per-step data and noise from (seed, step) alone: a resumed run draws exactly what an unbroken one would."""
        x = self.inputs
        x.inst_idx.copy_(self.inst_schedule[step])
        if self.prior:
            x.cls_idx.copy_(self.cls_schedule[step])
        self._gen.manual_seed(self.plan.seed * 1_000_003 + step)
        if self.world > 1:  # the same draws as one process with the global batch, so the runs agree
            torch.randn(self._noise_all.shape, generator=self._gen, out=self._noise_all)
            self.objective.draw_timesteps(self._gen, self._t_all)
            torch.index_select(self._noise_all, 0, self._own_rows, out=x.noise)
            torch.index_select(self._t_all, 0, self._own_rows, out=x.timesteps)
            return
        torch.randn(x.noise.shape, generator=self._gen, out=x.noise)
        self.objective.draw_timesteps(self._gen, x.timesteps)

    def loss(self) -> torch.Tensor:
        """Instance loss + prior_loss_weight x class loss for the current inputs."""
        x = self.inputs
        # the posterior mean, not a sample: SD's VAE posterior is so narrow that sampling only adds noise
        latents = self.inst_mean[x.inst_idx]
        if self.prior:
            latents = torch.cat([latents, self.cls_mean[x.cls_idx]])
        noisy, target = self.objective.noisy_and_target(latents, x.noise, x.timesteps)
        cond = self.cond
        if self.text_encoders:  # trained text encoders: re-encode the prompts every step
            fresh = self.family.encode_tokens(self.parts, self.tokens)
            cond = {**cond, **{k: v.to(self.weight_dtype) for k, v in fresh.items()}}
        sample = noisy.to(self.weight_dtype)
        if self.device.type == "cuda" and self.family.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        pred = self.family.predict(self._forward, sample, x.timesteps, cond)
        per_row = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
        b = self.plan.batch_size
        total = per_row[:b].mean()
        if self.prior:
            total = total + self.plan.prior_loss_weight * per_row[b:].mean()
        return total

    def _body(self) -> None:
        self.flat.grad.zero_()
        total = self.loss()
        total.backward()
        self.loss_out.copy_(total.detach())
        if self.world > 1:  # data parallel: every rank applies the mean gradient, so the weights stay identical
            average_gradients(self.flat.grad, self.loss_out)
        self._update(self.flat.data, self.flat.grad, self.m, self.v, self.opt_step)

    def run_step(self, step: int) -> torch.Tensor:
        """Run training step `step` (0-based); returns the loss as a device tensor (no host sync)."""
        self._fill_inputs(step)
        if self._graph is not None:
            self._graph.replay()
        elif self._use_graph and self._eager_steps >= _EAGER_WARMUP:
            self._capture()
            if self._graph is not None:
                self._graph.replay()
            else:
                self._body()
        else:
            self._warmup_body()
            self._eager_steps += 1
        return self.loss_out

    def _warmup_body(self) -> None:
        try:
            if self._use_graph:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    self._body()
                torch.cuda.current_stream().wait_stream(side)
            else:
                self._body()
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:
            if not self.mode.startswith("compiled"):
                raise
            # compilation fails before the step runs, so retrying eagerly applies the step exactly once
            self.log.warning("torch.compile failed, training eagerly: %s", exc, exc_info=True)
            uncompile_blocks(self.unet)
            self._forward, self._update, self.mode = self.unet, self._eager_update, "eager"
            self._warmup_body()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                self._body()
            captured: Exception | None = None
        except Exception as exc:  # capture limits vary by model and library version: eager is slower, not wrong
            captured = exc
        # a graph holding a collective must be replayed by every rank or by none
        if captured is None and (self.world == 1 or all_agree(True)):
            self._graph = graph
            self.mode += "+cudagraph"
            return
        if captured is not None and self.world > 1:
            all_agree(False)
        self.log.warning("CUDA graph capture failed, training without it: %s", captured or "failed on another GPU",
                         exc_info=captured)
        self._use_graph = False
        self._graph = None
        torch.cuda.synchronize()

    # ------------------------------------------------------------------ state
    def optimizer_tensors(self) -> dict[str, torch.Tensor]:
        return {"opt.m": self.m, "opt.v": self.v, "opt.step": self.opt_step}

    def load_optimizer(self, tensors: dict[str, torch.Tensor]) -> None:
        self.m.copy_(tensors["opt.m"])
        self.v.copy_(tensors["opt.v"])
        self.opt_step.copy_(tensors["opt.step"])

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.flat.names if n not in tensors]
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[0]}")
        with torch.no_grad():
            for n, p in zip(self.flat.names, self.flat.params, strict=True):
                p.copy_(tensors[n])

    def layout(self) -> dict[str, Any]:
        return {"names": self.flat.names, "numels": self.flat.numels, "mode": self.plan.mode,
                "text_encoder": bool(self.text_encoders)}


def is_finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)
