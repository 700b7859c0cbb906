"""The attention kernel is chosen by trying each backend at the job's shapes, and a broken one is left out."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ioncannon.engine import attention
from ioncannon.engine.attention import AttentionShape, choose, is_kernel_error, run_trials_isolated
from ioncannon.engine.families import family_for
from ioncannon.engine.families.flux import transformer_config
from ioncannon.engine.models.load import unet_config
from ioncannon.job.handle import runner_command
from ioncannon.job.lock import LOCK_FD_ENV, adopt_lock, runner_pid

ROOT = Path(__file__).resolve().parents[2]
SHAPES = [AttentionShape(1, 2, 64, 64, 16), AttentionShape(1, 2, 64, 8, 16)]
CPU = torch.device("cpu")
FAULTS = "tests.engine.attention_faults"


@pytest.fixture(autouse=True)
def _restore_sdpa():
    with attention.restored():
        yield


@pytest.fixture
def child_path(monkeypatch):
    """The trial children import the planted faults from this checkout's tests package."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_real_trials_pass_on_the_cpu_and_keep_the_preferred_order(tmp_path: Path) -> None:
    choice = choose(CPU, torch.float32, SHAPES, backward=True, cache_dir=tmp_path)
    assert choice.order == ["flash", "math"] and all(t.ok for t in choice.trials)
    assert choice.sentence().startswith("attention kernel: flash")


def test_a_backend_that_raises_is_left_out_and_named(tmp_path: Path) -> None:
    choice = choose(CPU, torch.float32, SHAPES, True, tmp_path, trial_fn=f"{FAULTS}:raise_on_flash")
    assert choice.order == ["math"]
    assert "flash failed: RuntimeError: Expected mha_graph.execute" in choice.sentence()


def test_a_backend_with_wrong_numbers_is_left_out(tmp_path: Path) -> None:
    choice = choose(CPU, torch.float32, SHAPES, True, tmp_path, trial_fn=f"{FAULTS}:wrong_on_flash")
    assert choice.order == ["math"]
    assert "wrong results" in next(t.error for t in choice.trials if t.backend == "flash")


def test_a_backward_that_replays_one_gradient_layout_on_another_is_caught(tmp_path: Path) -> None:
    # FLUX.1's double and single blocks send attention's output gradient with different row strides; a kernel that
    # replays the first layout's plan on the other passed every single-layout test, and the real model crashed
    choice = choose(CPU, torch.float32, SHAPES, True, tmp_path, trial_fn=f"{FAULTS}:replays_the_first_gradient_layout")
    assert choice.order == ["math"]
    error = next(t.error for t in choice.trials if t.backend == "flash")
    assert error.startswith("wrong gradient of") and "fused layout" in error, error
    sampling = choose(CPU, torch.float32, SHAPES, False, tmp_path,
                      trial_fn=f"{FAULTS}:replays_the_first_gradient_layout")
    assert sampling.order == ["flash", "math"], "no gradient when sampling: nothing to replay"


def test_the_kernel_test_checks_gradients_not_only_that_they_are_finite() -> None:
    """A backward that returns finite but wrong gradients fails the trial (the output alone would pass it)."""
    from ioncannon.engine.attention import sdpa_trial
    from tests.engine.attention_faults import flash_backward

    with flash_backward(grads_out=lambda grads: tuple(g / 2 for g in grads)):
        trial = sdpa_trial("flash", SHAPES, torch.float32, CPU, backward=True)
        assert sdpa_trial("flash", SHAPES, torch.float32, CPU, backward=False).ok
    assert not trial.ok and trial.error.startswith("wrong gradient of q"), trial.error


@pytest.mark.slow
def test_a_backend_that_kills_its_process_costs_only_its_child(child_path: None) -> None:
    ran = run_trials_isolated(["flash", "math"], SHAPES, torch.float32, CPU, True, f"{FAULTS}:crash_on_flash",
                              timeout=120)
    by_name = {t.backend: t for t in ran.trials}
    assert not by_name["flash"].ok and "the process died" in by_name["flash"].error
    assert by_name["math"].ok and by_name["math"].ms is not None
    # where the time went: two children started (the second after the first died), and math's own trial
    assert ran.startup_s > 0 and by_name["math"].seconds is not None and by_name["math"].seconds > 0


def test_the_choice_is_kept_per_card_and_not_tested_again(tmp_path: Path) -> None:
    first = choose(CPU, torch.float32, SHAPES, True, tmp_path)
    assert re.fullmatch(r"flash \d+\.\d s, math \d+\.\d s", first.cost()), first.cost()
    again = choose(CPU, torch.float32, SHAPES, True, tmp_path, trial_fn=f"{FAULTS}:never")
    assert again.cached and again.order == first.order
    other_shape = [AttentionShape(1, 2, 32, 32, 16)]   # another job's shapes are tested anew
    assert not choose(CPU, torch.float32, other_shape, True, tmp_path).cached


def test_a_kernel_that_broke_in_a_job_is_never_chosen_again(tmp_path: Path) -> None:
    attention.apply(choose(CPU, torch.float32, SHAPES, True, tmp_path), CPU)
    assert attention.mark_broken(tmp_path, CPU, "RuntimeError: CUDA error: an illegal memory access") == "flash"
    after = choose(CPU, torch.float32, SHAPES, True, tmp_path)
    assert after.order == ["math"]
    assert "failed earlier in a job on this card" in after.sentence()
    saved = json.loads((tmp_path / "attention.json").read_text())
    assert saved["broken"][attention.card_key(CPU)][0]["backend"] == "flash"


def test_apply_sets_the_process_switches(tmp_path: Path) -> None:
    choice = choose(CPU, torch.float32, SHAPES, True, tmp_path, trial_fn=f"{FAULTS}:raise_on_flash")
    attention.apply(choice, CPU)
    assert not torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
    assert attention.active() is choice


def test_no_working_kernel_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(attention.AttentionUnavailable, match="no attention kernel ran correctly"):
        choose(CPU, torch.float32, SHAPES, True, tmp_path, preference=("flash",), trial_fn=f"{FAULTS}:raise_on_flash")


def test_kernel_errors_are_told_from_bugs() -> None:
    assert is_kernel_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_kernel_error(RuntimeError("Expected mha_graph.execute(handle, variant_pack) to be true"))
    assert not is_kernel_error(RuntimeError("shape mismatch"))
    assert not is_kernel_error(ValueError("CUDA error"))


def _unet_parts(size: str) -> SimpleNamespace:
    cfg = unet_config(size)
    cfg.setdefault("num_attention_heads", None)
    return SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(**cfg)),
                           tokenizer=SimpleNamespace(model_max_length=77))


def test_sd15_shapes_are_the_real_unets() -> None:
    shapes = family_for("sd15").attention_shapes(_unet_parts("sd15"), 512)
    assert shapes[0] == AttentionShape(2, 8, 4096, 4096, 40)      # the 64x64 self-attention: the largest
    assert AttentionShape(2, 8, 4096, 77, 40) in shapes            # cross-attention to the prompt
    assert AttentionShape(2, 8, 64, 64, 160) in shapes             # the middle block at 8x8


def test_flux_shape_is_joint_attention_over_image_and_t5_tokens() -> None:
    parts = SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(**transformer_config("real"))),
                            tokenizer_2=SimpleNamespace(model_max_length=512))
    assert family_for("flux").attention_shapes(parts, 1024) == [AttentionShape(1, 24, 4608, 4608, 128)]


def _kernel_crash_job(workdir: Path, monkeypatch: pytest.MonkeyPatch, name: str):
    """A job whose stages crash in a GPU kernel while the attention kernel they chose is in use."""
    from ioncannon.engine import stages
    from ioncannon.engine.demo import demo_spec
    from ioncannon.job.workdir import create_job

    def broken_kernel(stage: str):
        def run(ctx) -> None:
            attention.apply(choose(ctx.device, torch.float32, SHAPES, True, ctx.shared_cache), ctx.device)
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                               "asynchronously reported at some other API call")
        return run

    monkeypatch.setattr(stages, "stage_function", broken_kernel)
    spec = demo_spec(workdir, name=name)
    return spec, create_job(workdir, spec)


def test_a_kernel_crash_restarts_the_runner_without_that_kernel(workdir: Path, monkeypatch) -> None:
    from ioncannon.engine import runner as runner_mod
    from ioncannon.engine.runner import RESTART_EXIT, Runner
    from ioncannon.job.events import Message, parse_event
    from ioncannon.job.state import read_state

    monkeypatch.setenv(runner_mod.KERNEL_RESTARTS_ENV, "0")  # restored (unset) after the test
    spec, paths = _kernel_crash_job(workdir, monkeypatch, "restart")
    assert Runner(paths, workdir, spec, logging.getLogger("test")).run() == RESTART_EXIT
    assert read_state(paths).status == "running", "a restart is not a failure: the client keeps following"
    events = [parse_event(line) for line in paths.events_file.read_text().splitlines()]
    said = [e.text for e in events if isinstance(e, Message) and e.level == "warning"]
    assert said and "flash attention kernel crashed" in said[-1] and "finished work is kept" in said[-1]
    assert choose(CPU, torch.float32, SHAPES, True, workdir / ".cache").order == ["math"], "flash is left out"

    # main() starts the runner again in place (same pid), counting the restart (flash forgotten, so it crashes again)
    (workdir / ".cache" / "attention.json").unlink()
    calls: list[list[str]] = []

    def fake_exec(path: str, args: list[str]) -> None:
        calls.append(args)
        raise SystemExit(0)

    monkeypatch.setattr(runner_mod.os, "execv", fake_exec)
    monkeypatch.setenv(LOCK_FD_ENV, "")   # the handed-over lock's variable is undone after the test
    with pytest.raises(SystemExit):
        runner_mod.main([str(paths.root), "--workdir", str(workdir)])
    assert calls and calls[0] == runner_command(paths, workdir), "started again as it was started"
    assert os.environ[runner_mod.KERNEL_RESTARTS_ENV] == "1"
    handed = int(os.environ[LOCK_FD_ENV])   # the lock stays held across the exec, for the new program to adopt
    adopted = adopt_lock(paths)
    assert adopted is not None and adopted.fd == handed and runner_pid(paths) is not None
    adopted.release()
    assert runner_pid(paths) is None


def test_a_kernel_that_keeps_crashing_fails_with_a_hint(workdir: Path, monkeypatch) -> None:
    from ioncannon.engine import runner as runner_mod
    from ioncannon.engine.runner import Runner
    from ioncannon.job.state import read_state

    monkeypatch.setenv(runner_mod.KERNEL_RESTARTS_ENV, str(runner_mod.MAX_KERNEL_RESTARTS))
    spec, paths = _kernel_crash_job(workdir, monkeypatch, "kernel")
    assert Runner(paths, workdir, spec, logging.getLogger("test")).run() == 1
    state = read_state(paths)
    assert state.status == "failed"
    assert "a GPU kernel failed while the flash attention kernel was in use" in state.message
    assert "illegal memory access" in state.message and "\n" not in state.message
    assert "leaves that kernel out" in state.hint
    assert choose(CPU, torch.float32, SHAPES, True, workdir / ".cache").order == ["math"]


def test_a_model_leaves_out_a_kernel_by_rule_even_when_its_test_passed_or_was_cached(tmp_path: Path) -> None:
    """A family's rule keeps a kernel out of its runs (Flux's training: cuDNN), fresh or from the cache, and says so."""
    cached = choose(CPU, torch.float32, SHAPES, True, tmp_path)
    assert cached.order == ["flash", "math"]
    ruled = choose(CPU, torch.float32, SHAPES, True, tmp_path, left_out={"flash": "it broke inside this model"})
    assert ruled.order == ["math"] and ruled.cached
    assert "left out: flash left out for this model: it broke inside this model" in ruled.sentence()
    fresh = choose(CPU, torch.float32, SHAPES, True, None, left_out={"flash": "why", "cudnn": "not on a CPU"})
    assert fresh.order == ["math"] and [t.backend for t in fresh.trials if not t.ok] == ["flash"]
    assert choose(CPU, torch.float32, SHAPES, True, tmp_path).order == ["flash", "math"], "only that model's runs"


def test_flux_training_leaves_out_cudnn_and_its_sampling_and_other_families_do_not() -> None:
    from ioncannon.engine.families import family_for

    assert set(family_for("flux").attention_left_out(True)) == {"cudnn"}
    assert family_for("flux").attention_left_out(False) == {}
    for name in ("sd15", "sdxl"):
        assert family_for(name).attention_left_out(True) == family_for(name).attention_left_out(False) == {}
