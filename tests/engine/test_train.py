"""The training stage end to end on the tiny model: hand-off files, load_trained, events, previews, LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ioncannon.engine.families import load_trained
from ioncannon.engine.models.load import TINY_RESOLUTION
from ioncannon.engine.train.cache import run_cache
from ioncannon.engine.train.loop import run_training
from ioncannon.engine.weights.trained import lora_state, trained_info
from ioncannon.job.errors import StageError
from ioncannon.job.events import CheckpointSaved, Message, Progress, SampleReady
from tests.engine.conftest import load_sd15
from tests.engine.test_train_support import make_job, unet_weights


def _unet_out(unet: torch.nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ehs = torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([10, 500]), ehs).sample


def test_full_run_publishes_weights_events_and_previews(tmp_path: Path, tiny_model: Path) -> None:
    ctx, events = make_job(tmp_path, tiny_model, steps=8, checkpoint_every=4, sample_every=4)
    run_cache(ctx)
    run_training(ctx)
    info = trained_info(ctx.paths)
    assert info is not None
    assert {k: info[k] for k in ("mode", "steps", "base_model", "text_encoder_trained", "lora")} == {
        "mode": "full", "steps": 8, "base_model": str(tiny_model), "text_encoder_trained": False, "lora": None}
    progress = [e for e in events if isinstance(e, Progress) and e.stage == "train"]
    assert progress[-1].done == progress[-1].total == 8
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert all(p.loss is not None and p.loss > 0 for p in progress)
    assert progress[-1].rate > 0 and progress[-1].eta_s == 0
    assert [e.step for e in events if isinstance(e, CheckpointSaved)] == [4]
    samples = [e for e in events if isinstance(e, SampleReady)]
    assert [s.step for s in samples] == [4, 8]
    with Image.open(samples[-1].path) as im:
        assert im.size == (TINY_RESOLUTION, TINY_RESOLUTION)
    assert not ctx.paths.checkpoints.exists()
    stats = json.loads(ctx.paths.train_stats_file.read_text())
    assert len(stats["first_step_each_s"]) == 1 and stats["first_step_each_s"][0] <= stats["first_steps_s"], \
        "the start-up steps are timed one by one (one on the CPU, three on a GPU)"

    trained = load_trained(ctx)
    published = unet_weights(ctx.paths)
    state = trained.unet.state_dict()
    assert all(torch.equal(state[k], published[k]) for k in published)
    base = load_sd15(str(tiny_model)).unet.state_dict()
    assert any(not torch.equal(base[k], published[k]) for k in published), "training changed the weights"
    assert not trained.unet.training and trained.unet.device.type == "cpu"


def test_finished_training_is_not_redone(tmp_path: Path, tiny_model: Path) -> None:
    ctx, events = make_job(tmp_path, tiny_model, steps=3, checkpoint_every=0, sample_every=0)
    run_cache(ctx)
    run_training(ctx)
    before = (ctx.paths.trained / "unet.safetensors").stat().st_mtime_ns
    run_training(ctx)
    assert (ctx.paths.trained / "unet.safetensors").stat().st_mtime_ns == before
    assert any(isinstance(e, Message) and "already finished" in e.text for e in events)


def test_lora_run_hands_off_adapters(tmp_path: Path, tiny_model: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_model, mode="lora", lora_rank=4, steps=6, checkpoint_every=3, sample_every=0)
    run_cache(ctx)
    run_training(ctx)
    info = trained_info(ctx.paths)
    assert info["mode"] == "lora" and info["lora"]["rank"] == 4 and info["lora"]["alpha"] == 4.0
    assert "to_q" in info["lora"]["target_modules_unet"]
    states = lora_state(ctx.paths)
    assert set(states) == {"unet"}
    assert states["unet"] and all("lora_A" in k or "lora_B" in k for k in states["unet"])
    assert any(v.abs().sum() > 0 for k, v in states["unet"].items() if "lora_B" in k), "lora_B moved from zero"
    base = _unet_out(load_sd15(str(tiny_model)).unet)
    tuned = _unet_out(load_trained(ctx).unet)
    assert not torch.allclose(base, tuned), "the adapters change the output"
    assert torch.equal(tuned, _unet_out(load_trained(ctx).unet))


def test_training_the_text_encoder_publishes_it(tmp_path: Path, tiny_model: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_model, train_text_encoder=True, steps=4, checkpoint_every=0, sample_every=0)
    run_cache(ctx)
    run_training(ctx)
    assert trained_info(ctx.paths)["text_encoder_trained"]
    base = load_sd15(str(tiny_model)).text_encoder.state_dict()
    trained = load_trained(ctx).text_encoder.state_dict()
    assert any(not torch.equal(base[k], trained[k]) for k in base if k in trained)


def test_training_without_a_cache_says_what_to_do(tmp_path: Path, tiny_model: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_model, steps=2)
    with pytest.raises(StageError, match="cache"):
        run_training(ctx)


def test_load_trained_before_training_is_a_stage_error(tmp_path: Path, tiny_model: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_model)
    with pytest.raises(StageError, match="No trained weights"):
        load_trained(ctx)
    assert trained_info(ctx.paths) is None and lora_state(ctx.paths) is None
