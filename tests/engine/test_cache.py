"""The cache stage: latents of photos, their mirror images and class images, prompt embeddings, and its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ioncannon.engine.train.cache import KEY_FILE, TENSORS_FILE, _load_pixels, load_cache, run_cache
from ioncannon.job.errors import StageError
from ioncannon.job.events import Message
from tests.engine.conftest import load_sd15
from tests.engine.test_train_support import make_job, subject_image


def test_cache_holds_photos_mirrors_class_images_and_prompts(tmp_path: Path, tiny_model: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_model, photos=3, class_images=5)
    run_cache(ctx)
    cache = load_cache(ctx)
    assert cache is not None
    assert cache.instance_mean.shape == (6, 4, 8, 8) and cache.class_mean.shape == (5, 4, 8, 8)
    assert (cache.instance_std > 0).all()
    parts = load_sd15(str(tiny_model))
    photo = sorted(ctx.paths.training_samples("dog").glob("*.png"))[1]
    pixels = _load_pixels(photo, 64).unsqueeze(0)
    with torch.no_grad():
        plain = parts.vae.encode(pixels).latent_dist.mean * parts.vae.config.scaling_factor
        mirrored = parts.vae.encode(torch.flip(pixels, dims=[3])).latent_dist.mean * parts.vae.config.scaling_factor
        ids = parts.tokenizer(
            ctx.spec.instance_prompt, padding="max_length", max_length=77, return_tensors="pt"
        ).input_ids
        embeds = parts.text_encoder(ids)[0]
    assert torch.allclose(cache.instance_mean[1], plain[0], atol=1e-5)
    assert torch.allclose(cache.instance_mean[3 + 1], mirrored[0], atol=1e-5)
    assert torch.allclose(cache.instance_embeds, embeds, atol=1e-5)
    assert not torch.allclose(cache.instance_embeds, cache.class_embeds)
    assert torch.equal(cache.instance_ids, ids)


def test_current_cache_is_reused(tmp_path: Path, tiny_model: Path) -> None:
    ctx, events = make_job(tmp_path, tiny_model, photos=2, class_images=2)
    run_cache(ctx)
    stamp = (ctx.paths.cache / TENSORS_FILE).stat().st_mtime_ns
    run_cache(ctx)
    assert (ctx.paths.cache / TENSORS_FILE).stat().st_mtime_ns == stamp
    assert any(isinstance(e, Message) and "up to date" in e.text for e in events)


def test_changed_model_resolution_or_photos_invalidate(tmp_path: Path, tiny_model: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_model, photos=2, class_images=2)
    run_cache(ctx)
    assert load_cache(ctx) is not None
    ctx.spec = ctx.spec.replace(resolution=128)
    assert load_cache(ctx) is None
    ctx.spec = ctx.spec.replace(resolution=64, base_model=str(tiny_model) + "-other")
    assert load_cache(ctx) is None
    ctx.spec = ctx.spec.replace(base_model=str(tiny_model))
    assert load_cache(ctx) is not None
    subject_image(99).save(ctx.paths.training_samples("dog") / "zq dog_009.png")
    assert load_cache(ctx) is None
    run_cache(ctx)
    assert load_cache(ctx).instance_mean.shape[0] == 6


def test_a_missing_key_file_means_stale(tmp_path: Path, tiny_model: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_model, photos=2, class_images=2)
    run_cache(ctx)
    (ctx.paths.cache / KEY_FILE).unlink()
    assert load_cache(ctx) is None


def test_prior_preservation_without_class_images_is_a_stage_error(tmp_path: Path, tiny_model: Path) -> None:
    ctx, _ = make_job(tmp_path, tiny_model, photos=2, class_images=0)
    with pytest.raises(StageError, match="No class images") as info:
        run_cache(ctx)
    assert info.value.hint
    ctx.spec = ctx.spec.replace(
        train=ctx.spec.train.__class__(**{**ctx.spec.train.__dict__, "prior_preservation": False})
    )
    run_cache(ctx)
    assert load_cache(ctx).class_mean.shape[0] == 0


def test_training_reuses_the_model_the_cache_stage_loaded(tmp_path: Path, tiny_model: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.engine.families.base import Family
    from ioncannon.engine.train.loop import run_training

    ctx, _ = make_job(tmp_path, tiny_model, steps=3, checkpoint_every=0, sample_every=0)
    loads: list[str] = []
    real = Family.load

    def counting_load(self: Family, source: str, *args: object, **kwargs: object) -> object:
        loads.append(source)
        return real(self, source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Family, "load", counting_load)
    run_cache(ctx)
    run_training(ctx)
    assert loads == [str(tiny_model)], "one load serves the cache stage and training"
    assert ctx.held == {}, "training took the model: nothing stays held"
    run_training(ctx)  # finished already: nothing is loaded
    assert len(loads) == 1
