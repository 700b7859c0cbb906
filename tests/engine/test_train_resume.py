"""Resume after a stop, a crash, a kill -9 (also mid-save) or a damaged checkpoint ends with uninterrupted weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ioncannon.engine.context import StageContext
from ioncannon.engine.train.cache import run_cache
from ioncannon.engine.train.checkpoint import CheckpointStore
from ioncannon.engine.train.loop import run_training
from ioncannon.job.errors import StageError, StopRequested
from ioncannon.job.events import Message, Progress
from tests.engine.test_train_support import make_job, single_thread, unet_weights

PLAN = dict(steps=12, checkpoint_every=4, sample_every=0, keep_checkpoints=3)
REPO = Path(__file__).resolve().parents[2]


class Crash(Exception):
    """Stands in for the process dying: nothing is saved on the way out."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, torch.Tensor]:
    ctx, _ = make_job(tmp_path_factory.mktemp("ref"), tiny_model, **PLAN)
    with single_thread():
        run_cache(ctx)
        run_training(ctx)
    return unet_weights(ctx.paths)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, f"weights differ by up to {worst}"


def _stop_after(k: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= k

    return should_stop


def _resume(ctx: StageContext) -> None:
    ctx.should_stop = lambda: False
    run_training(ctx)


@pytest.mark.parametrize("k", [1, 4, 7, 11])
def test_stop_then_resume_equals_uninterrupted(tmp_path: Path, tiny_model: Path, reference: dict, k: int) -> None:
    ctx, events = make_job(tmp_path, tiny_model, **PLAN)
    run_cache(ctx)
    ctx.should_stop = _stop_after(k)
    with pytest.raises(StopRequested):
        run_training(ctx)
    assert CheckpointStore(ctx.paths.checkpoints).published()[0][0] == k
    _resume(ctx)
    assert any(isinstance(e, Message) and f"Resuming training at step {k} " in e.text for e in events)
    _assert_same(unet_weights(ctx.paths), reference)
    assert not ctx.paths.checkpoints.exists(), "the ~GB training state is removed once the weights are published"


@pytest.mark.parametrize("crash_at", [3, 10])
def test_crash_resumes_from_the_last_periodic_checkpoint(tmp_path: Path, tiny_model: Path, reference: dict,
                                                         crash_at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.engine.train.step import Trainer

    ctx, events = make_job(tmp_path, tiny_model, **PLAN)
    run_cache(ctx)
    original = Trainer.run_step

    def run_step(self: Trainer, step: int) -> torch.Tensor:
        if step == crash_at:
            raise Crash()
        return original(self, step)

    monkeypatch.setattr(Trainer, "run_step", run_step)
    with pytest.raises(Crash):
        run_training(ctx)
    monkeypatch.setattr(Trainer, "run_step", original)
    _resume(ctx)
    expected = crash_at // 4 * 4
    resumed = [e.text for e in events if isinstance(e, Message) and "Resuming" in e.text]
    assert resumed == ([f"Resuming training at step {expected} of 12."] if expected else [])
    _assert_same(unet_weights(ctx.paths), reference)


def test_corrupted_newest_checkpoint_falls_back(tmp_path: Path, tiny_model: Path, reference: dict) -> None:
    ctx, events = make_job(tmp_path, tiny_model, **PLAN)
    run_cache(ctx)
    ctx.should_stop = _stop_after(9)
    with pytest.raises(StopRequested):
        run_training(ctx)
    newest = ctx.paths.checkpoints / "step_00000009" / "optimizer.safetensors"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x55
    newest.write_bytes(bytes(data))
    _resume(ctx)
    texts = [e.text for e in events if isinstance(e, Message)]
    assert any("step 9 is unusable" in t for t in texts)
    assert "Resuming training at step 8 of 12." in texts
    _assert_same(unet_weights(ctx.paths), reference)


def test_full_disk_stops_with_a_message_and_keeps_the_checkpoint(tmp_path: Path, tiny_model: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.engine.train import checkpoint as ckpt_mod
    ctx, _ = make_job(tmp_path, tiny_model, **PLAN)
    run_cache(ctx)
    real = ckpt_mod.free_bytes
    saves = {"n": 0}

    def free_bytes(path: Path) -> int:
        saves["n"] += 1
        return real(path) if saves["n"] == 1 else 1024

    monkeypatch.setattr(ckpt_mod, "free_bytes", free_bytes)
    with pytest.raises(StageError) as info:
        run_training(ctx)
    assert "Disk full" in info.value.message and "step 4 is kept" in info.value.message
    assert [s for s, _ in CheckpointStore(ctx.paths.checkpoints).published()] == [4]


def test_diverging_loss_stops_with_a_diagnosis(tmp_path: Path, tiny_model: Path) -> None:
    ctx, events = make_job(tmp_path, tiny_model, steps=40, checkpoint_every=0, sample_every=0, learning_rate=1e5)
    run_cache(ctx)
    with pytest.raises(StageError) as info:
        run_training(ctx)
    assert "diverged" in info.value.message and "learning rate" in info.value.hint.lower()
    steps = max(e.done for e in events if isinstance(e, Progress) and e.stage == "train")
    assert steps < 20, "caught within a few steps"


def test_nan_from_the_first_step_blames_the_inputs(tmp_path: Path, tiny_model: Path) -> None:
    from safetensors.torch import load_file, save_file

    from ioncannon.engine.train.cache import TENSORS_FILE

    ctx, _ = make_job(tmp_path, tiny_model, steps=5, checkpoint_every=0, sample_every=0)
    run_cache(ctx)
    path = ctx.paths.cache / TENSORS_FILE
    tensors = load_file(str(path))
    tensors["instance_mean"][:] = float("nan")
    save_file(tensors, str(path))
    with pytest.raises(StageError, match="from the first step"):
        run_training(ctx)


def test_out_of_memory_steps_down_and_resumes(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ioncannon.engine.train.loop import active_plan
    from ioncannon.engine.train.step import Trainer

    ctx, events = make_job(tmp_path, tiny_model, **PLAN)
    run_cache(ctx)
    original = Trainer.run_step
    raised = {"done": False}

    def run_step(self: Trainer, step: int) -> torch.Tensor:
        if step == 6 and not raised["done"]:
            raised["done"] = True
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, step)

    monkeypatch.setattr(Trainer, "run_step", run_step)
    run_training(ctx)
    texts = [e.text for e in events if isinstance(e, Message)]
    assert any("Out of GPU memory" in t and "resuming from step 4" in t for t in texts)
    assert "Resuming training at step 4 of 12." in texts
    assert active_plan(ctx).gradient_checkpointing, "the leaner plan is remembered for later resumes"


_KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
import torch
from ioncannon.engine.train import checkpoint
from ioncannon.engine.context import StageContext
from ioncannon.job.spec import load_spec
from ioncannon.job.paths import JobPaths
from ioncannon.engine.train.loop import run_training

paths = JobPaths(sys.argv[1])
if sys.argv[2] == "mid-save":
    real = checkpoint._write_manifest
    def write_manifest(staging, step, files):
        if step == 10:
            os.kill(os.getpid(), signal.SIGKILL)
        real(staging, step, files)
    checkpoint._write_manifest = write_manifest
if sys.argv[2] == "mid-background-write":
    import threading
    from ioncannon.engine.train.step import Trainer
    past_save = threading.Event()
    real_step = Trainer.run_step
    def run_step(self, step):
        if step >= 12:
            past_save.set()
        return real_step(self, step)
    Trainer.run_step = run_step
    real_write = checkpoint.write_safetensors
    def write_safetensors(path, tensors, metadata=None):
        if "step_00000010" in str(path.parent) and path.name == checkpoint.OPTIMIZER:
            # the weights file is on disk, the optimizer file half-way: kill while training runs on
            if past_save.wait(120):
                (paths.root / "trained-past-save").touch()
            with open(path, "wb") as fh:
                fh.write(b"half a file")
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(path, tensors, metadata)
    checkpoint.write_safetensors = write_safetensors
ctx = StageContext(spec=load_spec(paths), paths=paths, workdir=paths.root.parent, emit=lambda e: None,
                   should_stop=lambda: False, device=torch.device("cpu"))
run_training(ctx)
"""


def _child(ctx: StageContext, how: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(ctx.paths.root), how], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, torch.Tensor]:
    ctx, _ = make_job(tmp_path_factory.mktemp("longref"), tiny_model, steps=60, checkpoint_every=5, sample_every=0)
    with single_thread():
        run_cache(ctx)
        run_training(ctx)
    return unet_weights(ctx.paths)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["mid-run", "mid-save", "mid-background-write"])
def test_kill_9_then_resume_equals_uninterrupted(
    tmp_path: Path, tiny_model: Path, long_reference: dict, how: str
) -> None:
    ctx, events = make_job(tmp_path, tiny_model, steps=60, checkpoint_every=5, sample_every=0)
    run_cache(ctx)
    child = _child(ctx, how)
    store = CheckpointStore(ctx.paths.checkpoints)
    deadline = time.monotonic() + 120
    if how == "mid-run":
        while not any(step >= 10 for step, _ in store.published()):
            assert child.poll() is None, "the child ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=120) == -signal.SIGKILL
    assert not (ctx.paths.meta / "trained").exists(), "killed before the end"
    if how in ("mid-save", "mid-background-write"):
        assert any(p.name.startswith(".staging-") for p in ctx.paths.checkpoints.iterdir())
        assert store.load_latest().step == 5
    if how == "mid-background-write":
        assert (ctx.paths.root / "trained-past-save").exists(), "training kept stepping while the save was written"
    _resume(ctx)
    resumed = [e.text for e in events if isinstance(e, Message) and "Resuming" in e.text]
    assert len(resumed) == 1 and int(resumed[0].split()[4]) >= 5
    _assert_same(unet_weights(ctx.paths), long_reference)
