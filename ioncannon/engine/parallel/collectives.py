"""Collectives a stage calls inside one of several processes: rank, gradient averaging, agreement, broadcasts."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

_CPU_GROUP: Any = None  # gloo group for host-side agreement (stop flags) that must not sync the GPU


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this training process; (0, 1) outside a multi-process launch."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def image_shard() -> tuple[int, int]:
    """(rank, world size) for sharded image stages, set by `launch` in each worker's environment."""
    try:
        world = int(os.environ.get("IONCANNON_WORLD_SIZE", "1"))
        rank = int(os.environ.get("IONCANNON_RANK", "0"))
    except ValueError:
        return 0, 1
    return (rank, world) if 0 <= rank < world else (0, 1)


def average_gradients(grad: torch.Tensor, loss: torch.Tensor) -> None:
    """Mean of the flat gradient buffer (one bucket, one all-reduce) and of the loss over all processes."""
    world = dist.get_world_size()
    # gloo has no AVG: sum, then scale (the same on every rank, so the weights stay identical)
    dist.all_reduce(grad)
    grad.mul_(1.0 / world)
    dist.all_reduce(loss)
    loss.mul_(1.0 / world)


def broadcast_from_first(tensors: list[torch.Tensor]) -> None:
    """Copy rank 0's values into every rank's tensors (DDP's start-up broadcast)."""
    for t in tensors:
        dist.broadcast(t, src=0)


def sync_rng_from_first(device: torch.device) -> None:
    """Give every rank rank 0's CPU and current-GPU generator states: stochastic bf16 rounding must agree."""
    group = _CPU_GROUP
    state = torch.get_rng_state()
    dist.broadcast(state, src=0, group=group)
    torch.set_rng_state(state)
    if device.type == "cuda":
        cuda_state = torch.cuda.get_rng_state(device)
        dist.broadcast(cuda_state, src=0, group=group)
        torch.cuda.set_rng_state(cuda_state, device)


def all_agree(flag: bool) -> bool:
    """True only if `flag` is true on every rank (a host-side collective over gloo)."""
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MIN, group=_CPU_GROUP)
    return bool(t.item())


def agreed_stop(local: Callable[[], bool]) -> Callable[[], bool]:
    """A should_stop that every rank answers alike at the same call: one rank stopping alone would hang the rest."""

    def should_stop() -> bool:
        t = torch.tensor([1 if local() else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_CPU_GROUP)
        return bool(t.item())

    return should_stop


def init_group(rank: int, world: int, device: torch.device, timeout_s: float) -> None:
    """Join the process group (NCCL on GPUs, gloo on the CPU) and make the host-side group for agreement."""
    global _CPU_GROUP
    from datetime import timedelta

    timeout = timedelta(seconds=timeout_s)
    if device.type == "cuda":
        dist.init_process_group("nccl", rank=rank, world_size=world, timeout=timeout, device_id=device)
        _CPU_GROUP = dist.new_group(backend="gloo", timeout=timeout)
    else:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timeout)
        _CPU_GROUP = None  # the default group already runs on the host
