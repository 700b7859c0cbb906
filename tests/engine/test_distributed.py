"""Data-parallel training on the CPU with gloo: two processes match one with the same global batch, and resume."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from ioncannon.engine.families import family_for
from ioncannon.engine.parallel.launch import launch
from ioncannon.engine.stages import stage_function
from ioncannon.engine.train.cache import run_cache
from ioncannon.engine.train.checkpoint import CheckpointStore
from ioncannon.engine.train.loop import run_training
from ioncannon.job.errors import StopRequested
from ioncannon.job.events import CheckpointSaved, Message, Progress
from ioncannon.job.plan.box import GpuInfo, HardwareInfo
from ioncannon.job.plan.memory import choose_plan, data_parallel
from tests.engine.test_train_support import make_job, unet_weights

# the demo recipe (lr 3e-4, fp32, prior preservation); 16 steps leave room to stop a run part-way
PLAN = dict(steps=16, checkpoint_every=4, sample_every=0, keep_checkpoints=2)
# Every step moves a weight by up to lr = 3e-4. Two processes sum the same per-row gradients in another order
# (batched vs. separate convolutions, then an all-reduce), a ~1e-7 relative change that Adam carries along:
# measured ~1e-6 after 16-24 steps. 1e-5 sits well under one step's update, and far under the ~1e-2 a run that
# trained each half of the batch on its own (no all-reduce) ends up at.
# Adam divides by the root of tiny second moments, so fp32 reduction-order noise grows over 16 steps to a few
# 1e-5 on some CPUs; a different batch moves weights by ~1e-2, so 1e-4 still tells the two apart by 70x.
TOLERANCE = 1e-4


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[dict[str, torch.Tensor], list]:
    """Two gloo processes, one photo + one class image each a step; the model comes from a picklable factory,
    as the benchmark passes it."""
    ctx, events = make_job(tmp_path_factory.mktemp("two"), tiny_model, batch_size=1, num_processes=2, **PLAN)
    run_cache(ctx)
    launch("train", ctx, 2, stage_kwargs={"components": functools.partial(family_for("sd15").load, str(tiny_model))})
    assert not ctx.paths.checkpoints.exists(), "rank 0 removes the training state once the weights are published"
    return unet_weights(ctx.paths), events


def _one_process(root: Path, model: Path, batch_size: int) -> dict[str, torch.Tensor]:
    ctx, _ = make_job(root, model, batch_size=batch_size, **PLAN)
    run_cache(ctx)
    run_training(ctx)
    return unet_weights(ctx.paths)


def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path, tiny_model: Path,
                                                            two_processes: tuple) -> None:
    weights, events = two_processes
    same_batch = _max_diff(weights, _one_process(tmp_path / "b2", tiny_model, batch_size=2))
    half_batch = _max_diff(weights, _one_process(tmp_path / "b1", tiny_model, batch_size=1))
    print(f"max |w(2 processes) - w(1 process, batch 2)| = {same_batch:.3g}; against batch 1: {half_batch:.3g}")
    assert same_batch <= TOLERANCE
    assert half_batch > 50 * TOLERANCE, "the comparison can tell a different batch apart"
    # rank 0 alone reports: one event per checkpoint, progress that only moves forward, averaged losses
    assert [e.step for e in events if isinstance(e, CheckpointSaved)] == [4, 8, 12]
    done = [e.done for e in events if isinstance(e, Progress) and e.stage == "train"]
    assert done == sorted(set(done)) and done[-1] == 16


def test_a_stopped_two_process_run_resumes_from_its_checkpoint(tmp_path: Path, tiny_model: Path,
                                                               two_processes: tuple) -> None:
    """Through the runner's stage hook, as the runner calls it; a stop arrives once the first checkpoint is out."""
    ctx, events = make_job(tmp_path, tiny_model, batch_size=1, num_processes=2, **PLAN)
    run_cache(ctx)
    ctx.should_stop = lambda: any(isinstance(e, CheckpointSaved) for e in events)
    with pytest.raises(StopRequested):
        stage_function("train")(ctx)
    saved = CheckpointStore(ctx.paths.checkpoints).published()
    assert saved and 4 <= saved[0][0] < 16, "stopped part-way, with a checkpoint"
    assert not (ctx.paths.meta / "trained").exists()

    ctx.should_stop = lambda: False
    stage_function("train")(ctx)
    texts = [e.text for e in events if isinstance(e, Message)]
    assert f"Resuming training at step {saved[0][0]} of 16." in texts
    assert _max_diff(unet_weights(ctx.paths), two_processes[0]) <= 1e-6, "resumed = uninterrupted"


def test_the_hardware_step_states_batch_and_learning_rate_scaling() -> None:
    h100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 79.1, 78.0)
    two = HardwareInfo([h100, GpuInfo(1, h100.name, 79.1, 78.0)], 200.0, 32, 256.0)
    single = choose_plan(two, family="sd15")
    multi = data_parallel(single, two)
    assert multi is not None
    plan = multi.plan
    assert plan.num_processes == 2 and plan.batch_size == single.plan.batch_size
    assert plan.steps == single.plan.steps // 2
    assert plan.learning_rate == pytest.approx(single.plan.learning_rate * 2 ** 0.5)
    assert "per GPU" in multi.why and "global batch 2" in multi.why and "sqrt(2)" in multi.why
    assert data_parallel(single, HardwareInfo([h100], 200.0, 16, 128.0)) is None
    busy = HardwareInfo([h100, GpuInfo(1, h100.name, 79.1, 3.0)], 200.0, 32, 256.0)
    assert data_parallel(single, busy) is None, "a GPU without room for the plan is not used"
