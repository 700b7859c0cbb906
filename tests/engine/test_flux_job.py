"""The learning check on the tiny Flux model and its gated download (its whole job: test_every_stage.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from ioncannon.engine.demo import demo_spec
from ioncannon.engine.families import family_for, load_trained
from ioncannon.engine.train.cache import load_cache, run_cache
from ioncannon.engine.train.loop import run_training
from ioncannon.job import handle
from ioncannon.job.lock import wait_for_exit
from ioncannon.job.spec import save_spec
from ioncannon.job.state import read_state
from ioncannon.job.workdir import create_job
from tests.engine.test_train_support import make_job

FLUX = family_for("flux")



def _losses(parts: Any, latents: torch.Tensor, prompts: dict[str, str]) -> dict[str, float]:
    """The flow-matching loss on `latents` under each prompt, one fixed draw of noise, at high noise levels (where
    the prompt decides what the picture becomes)."""
    g = torch.Generator().manual_seed(0)
    x0 = latents.repeat(8, 1, 1, 1)
    noise = torch.randn(x0.shape, generator=g)
    objective = FLUX.objective(parts.noise_scheduler, torch.device("cpu"), latent_hw=tuple(x0.shape[-2:]))
    t = torch.empty(x0.shape[0]).uniform_(700, 950, generator=g)
    noisy, target = objective.noisy_and_target(x0, noise, t)
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, prompt in prompts.items():
            cond = FLUX.encode_prompts(parts, [prompt], 64, torch.device("cpu"))
            cond = {k: v.expand(x0.shape[0], *v.shape[1:]) for k, v in cond.items()}
            out[name] = F.mse_loss(FLUX.predict(parts.unet, noisy, t, cond), target).item()
    return out


def test_training_fits_the_subject_and_load_trained_gives_the_lora_back(tmp_path: Path, tiny_flux: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The LoRA run (prior preservation on, Flux's option) fits the photos, and load_trained puts it back; the
    training stage asks for its attention kernels without those Flux leaves out by rule.

    Unlike the tiny SD models, the tiny random Flux barely reads its prompt (the identifier and the class word give
    the same loss before and after training), so this checks the fit and the hand-off, not the identifier's margin.
    """
    ctx, _ = make_job(tmp_path, tiny_flux, photos=4, class_images=8, steps=500, learning_rate=3e-3, mode="lora",
                      lora_rank=8, prior_preservation=True, checkpoint_every=0, sample_every=0)
    ctx.spec = ctx.spec.replace(family="flux")
    save_spec(ctx.paths, ctx.spec)
    run_cache(ctx)
    cache = load_cache(ctx)
    assert cache is not None and set(cache.instance_cond) == {"hidden", "pooled"}
    assert cache.instance_mean.shape[1] == 16 and cache.class_mean.shape[0] == 8
    subject, klass = cache.instance_mean, cache.class_mean
    prompts = {"identifier": ctx.spec.instance_prompt}

    before = _losses(FLUX.load(str(tiny_flux)), subject, prompts)["identifier"]
    before_class = _losses(FLUX.load(str(tiny_flux)), klass, {"class": ctx.spec.class_prompt})["class"]
    from ioncannon.engine import attention

    asked: list[tuple[bool, Any]] = []
    choose = attention.choose
    monkeypatch.setattr(attention, "choose", lambda *a, **k: asked.append((a[3], k.get("left_out"))) or choose(*a, **k))
    run_training(ctx)
    assert asked == [(True, FLUX.attention_left_out(True))] and "cudnn" in asked[0][1]
    trained = load_trained(ctx)
    after = _losses(trained, subject, prompts)["identifier"]
    after_class = _losses(trained, klass, {"class": ctx.spec.class_prompt})["class"]
    print(f"subject {before:.4f} -> {after:.4f}, class images {before_class:.4f} -> {after_class:.4f}")
    assert after < 0.75 * before, "training fits the subject, and the trained LoRA is what load_trained applies"
    assert after_class < 0.75 * before_class, "prior preservation trains on the class images too"

    # the LoRA export's load: no base weights at all (a skeleton on the meta device), the adapters exactly as trained
    from peft.utils import get_peft_model_state_dict

    from ioncannon.engine.families import trained_adapters
    from ioncannon.engine.weights.trained import lora_state

    bare = trained_adapters(ctx, torch.float32)
    assert bare.unet.x_embedder.weight.is_meta and bare.vae is None and bare.text_encoders() == []
    got, want = get_peft_model_state_dict(bare.unet), (lora_state(ctx.paths) or {})["unet"]
    assert set(got) == set(want) and all(got[k].dtype == torch.float32 and torch.equal(got[k], want[k]) for k in want)
    # and the export stage writes from it the same kohya file as from the whole trained model
    from safetensors.torch import load_file

    from ioncannon.engine.export import export_targets, run_export

    run_export(ctx)
    targets = export_targets(ctx.spec, ctx.paths)
    assert all(p.exists() for p in targets.wanted(lora=True, full_model=False))
    written, whole = load_file(str(targets.lora_kohya)), FLUX.kohya_lora(trained)
    assert set(written) == set(whole) and len(written) == 3 * (8 * 2 + 2 * 2)  # q/k/v fused as the original layout
    assert all(torch.allclose(written[k].float(), whole[k].to(written[k].dtype).float()) for k in whole)


@pytest.mark.slow
def test_a_gated_model_without_a_login_fails_in_one_sentence_before_downloading(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt would fail with another message
    spec = demo_spec(workdir, name="gated", family="flux").replace(base_model="black-forest-labs/FLUX.1-dev")
    paths = create_job(workdir, spec)
    handle.start(paths, workdir)
    assert wait_for_exit(paths, 300), "the runner did not finish"
    state = read_state(paths)
    assert state.status == "failed" and state.stage == "fetch", (state.status, state.stage, state.message)
    assert "hf auth login" in state.message and "accept its licence" in state.message
    assert "unexpected" not in state.message
