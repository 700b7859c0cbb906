"""Class images (shared cache, top-up) and the prompt pack (layout, collages, resume) on the tiny model."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ioncannon.engine.compile_cache import compile_blocks, repeated_blocks
from ioncannon.engine.context import StageContext
from ioncannon.engine.families.base import make_scheduler
from ioncannon.engine.generate.sampler import ImageSampler, initial_noise
from ioncannon.engine.generate.stage import (
    class_cache_dir,
    compile_scope,
    generate_pack,
    run_class_images,
)
from ioncannon.engine.models.load import TINY_RESOLUTION, Components, save_tiny_model
from ioncannon.job.errors import StageError, StopRequested
from ioncannon.job.events import CollageReady, Event, Message, Progress, SampleReady
from ioncannon.job.families import family_info
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import GeneratePlan, TrainPlan
from ioncannon.job.prompts import PromptStyle, save_pack
from ioncannon.job.spec import JobSpec
from tests.engine.conftest import load_sd15

STEPS = 4



def make_ctx(workdir: Path, job: str, model: Path, events: list[Event], *, class_images: int = 4,
             pack: str = "", per_prompt: int = 3, bare: int = 2, batch: int = 2, stop_after: int | None = None,
             prior: bool = True) -> StageContext:
    spec = JobSpec(
        name=job, photos_dir=str(workdir), identifier="sks", class_name="dog", base_model=str(model),
        resolution=TINY_RESOLUTION, device="cpu",
        train=TrainPlan(num_class_images=class_images, prior_preservation=prior),
        generate=GeneratePlan(steps=STEPS, images_per_prompt=per_prompt, bare_token_images=bare, batch_size=batch,
                              prompt_pack=pack),
    )
    paths = JobPaths(workdir / job)
    paths.ensure()
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return stop_after is not None and calls["n"] > stop_after

    return StageContext(spec=spec, paths=paths, workdir=workdir, emit=events.append, should_stop=should_stop)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns): tells a rewritten file from an untouched one."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.png"))}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).copy()


# --------------------------------------------------------------------------- the sampler itself


@pytest.mark.parametrize("sampler", ["dpm", "ddim"])
def test_fast_sampler_matches_the_diffusers_pipeline(tiny_model: Path, sampler: str) -> None:
    from diffusers import StableDiffusionPipeline

    parts = load_sd15(str(tiny_model))
    fast = ImageSampler(parts, torch.device("cpu"), torch.float32, sampler=sampler, steps=STEPS, guidance=7.0,
                        resolution=TINY_RESOLUTION, batch_size=2)
    prompts, negatives, seeds = ["a photo of sks dog", "an oil painting of sks dog"], ["", "blurry"], [5, 6]
    ours = fast.sample(prompts, negatives, seeds)
    pipe = StableDiffusionPipeline(
        unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
        scheduler=make_scheduler(sampler, parts.noise_scheduler), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        prompts,
        negative_prompt=negatives,
        latents=initial_noise(seeds, fast.latent_shape),
        num_inference_steps=STEPS,
        guidance_scale=7.0,
        height=TINY_RESOLUTION,
        width=TINY_RESOLUTION,
        output_type="np",
    ).images
    theirs = (theirs * 255).round().astype(np.uint8)
    assert ours.shape == (2, TINY_RESOLUTION, TINY_RESOLUTION, 3)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert np.abs(ours[0].astype(int) - ours[1].astype(int)).max() > 10, "different prompts and seeds differ"


# --------------------------------------------------------------------------- class images


def test_class_images_are_cached_and_reused_across_jobs(tmp_path: Path, tiny_model: Path) -> None:
    first: list[Event] = []
    ctx_a = make_ctx(tmp_path, "a", tiny_model, first, class_images=4)
    run_class_images(ctx_a)
    cache = class_cache_dir(ctx_a)
    job_a = ctx_a.paths.class_images("dog")
    assert sorted(p.name for p in job_a.glob("*.png")) == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert snapshot(cache).keys() == snapshot(job_a).keys()
    assert [e for e in first if isinstance(e, Progress)][-1].done == 4
    before = snapshot(cache)

    second: list[Event] = []
    ctx_b = make_ctx(tmp_path, "b", tiny_model, second, class_images=4)
    run_class_images(ctx_b)
    assert snapshot(cache) == before, "the second job generated nothing"
    job_b = ctx_b.paths.class_images("dog")
    for name in before:
        assert (job_b / name).read_bytes() == (cache / name).read_bytes()
    assert any(isinstance(e, Message) and "from the cache" in e.text for e in second)
    assert not any(isinstance(e, Progress) and e.rate > 0 for e in second)


def test_a_bigger_request_tops_up_the_cache(tmp_path: Path, tiny_model: Path) -> None:
    run_class_images(make_ctx(tmp_path, "small", tiny_model, [], class_images=3))
    ctx = make_ctx(tmp_path, "big", tiny_model, events := [], class_images=5)
    cache = class_cache_dir(ctx)
    before = snapshot(cache)
    run_class_images(ctx)
    after = snapshot(cache)
    assert {k: after[k] for k in before} == before, "cached images are not redrawn"
    assert sorted(set(after) - set(before)) == ["0003.png", "0004.png"]
    assert len(list(ctx.paths.class_images("dog").glob("*.png"))) == 5
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[0].done == 3 and progress[-1].done == progress[-1].total == 5
    # a smaller request later takes a prefix of the cache and draws nothing
    ctx_small = make_ctx(tmp_path, "smaller", tiny_model, [], class_images=2)
    run_class_images(ctx_small)
    assert snapshot(cache) == after
    assert sorted(p.name for p in ctx_small.paths.class_images("dog").glob("*.png")) == ["0000.png", "0001.png"]


def test_cache_key_separates_samplers_and_classes(tmp_path: Path, tiny_model: Path) -> None:
    ctx = make_ctx(tmp_path, "k", tiny_model, [])
    other_class = StageContext(spec=ctx.spec.replace(class_name="cat"), paths=ctx.paths, workdir=tmp_path,
                               emit=ctx.emit, should_stop=ctx.should_stop)
    other_sampler = StageContext(spec=ctx.spec.replace(generate=GeneratePlan(sampler="ddim", steps=100, guidance=10)),
                                 paths=ctx.paths, workdir=tmp_path, emit=ctx.emit, should_stop=ctx.should_stop)
    keys = {class_cache_dir(c) for c in (ctx, other_class, other_sampler)}
    assert len(keys) == 3


def test_no_class_images_without_prior_preservation(tmp_path: Path, tiny_model: Path) -> None:
    ctx = make_ctx(tmp_path, "np", tiny_model, events := [], prior=False)
    run_class_images(ctx)
    assert not ctx.paths.class_images("dog").exists()
    assert not (tmp_path / ".cache" / "class_images").exists()
    assert any(isinstance(e, Message) for e in events)


# --------------------------------------------------------------------------- the prompt pack


@pytest.fixture()
def two_style_pack(tmp_path: Path) -> str:
    styles = [
        PromptStyle("oil", "an oil painting of {token}", "blurry", 11),
        PromptStyle("comic", "a comic book drawing of {token}", "", 22),
        PromptStyle("off", "{token} skipped", "", 33, enabled=False),
    ]
    return str(save_pack(tmp_path / "pack.toml", styles))


def test_generate_writes_the_layout_collages_and_contact_sheet(
    tmp_path: Path, tiny_model: Path, two_style_pack: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = make_ctx(tmp_path, "g", tiny_model, events := [], pack=two_style_pack, per_prompt=3, bare=2)
    with caplog.at_level(logging.INFO, logger="ioncannon"):
        generate_pack(ctx, lambda: load_sd15(str(tiny_model)))
    # runner.log says where the stage's time went, every part measured
    costs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("the prompt pack took")]
    assert len(costs) == 1 and re.fullmatch(
        r"the prompt pack took [\d.]+ s: load [\d.]+ s, attention test [\d.]+ s, sampler set-up [\d.]+ s, "
        r"encode [\d.]+ s, denoise [\d.]+ s, decode [\d.]+ s, other [\d.]+ s", costs[0]), costs
    out = ctx.paths.outputs
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.jpg", "sks_bare", "sks_comic", "sks_oil"]
    for keyword, count in (("bare", 2), ("oil", 3), ("comic", 3)):
        folder = out / f"sks_{keyword}"
        samples = sorted(p.name for p in (folder / "samples").iterdir())
        assert samples == [f"{i:04d}.png" for i in range(count)]
        with Image.open(folder / f"sks_{keyword}-0000.jpg") as collage:
            assert collage.format == "JPEG" and collage.width > 128
        with Image.open(folder / "samples" / "0000.png") as img:
            assert img.size == (TINY_RESOLUTION, TINY_RESOLUTION)
    with Image.open(out / "contact_sheet.jpg") as sheet:
        assert sheet.height > sheet.width, "one row per prompt: three rows of two"
    collages = [e.keyword for e in events if isinstance(e, CollageReady)]
    assert collages == ["bare", "oil", "comic", "contact_sheet"]
    assert len([e for e in events if isinstance(e, SampleReady)]) == 8
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].done == progress[-1].total == 8 and progress[-1].rate > 0
    assert {"bare", "oil", "comic"} <= {e.label for e in progress}
    # the bare token set shows the instance prompt's likeness, each style its own prompt and seed
    bare0, oil0, oil1 = (
        pixels(out / f"sks_{k}" / "samples" / n)
        for k, n in (("bare", "0000.png"), ("oil", "0000.png"), ("oil", "0001.png"))
    )
    assert (
        np.abs(bare0.astype(int) - oil0.astype(int)).max() > 10
        and np.abs(oil0.astype(int) - oil1.astype(int)).max() > 10
    )


def test_resume_skips_existing_images_and_redraws_identical_pixels(
    tmp_path: Path, tiny_model: Path, two_style_pack: str
) -> None:
    def load() -> Components:
        return load_sd15(str(tiny_model))

    ctx = make_ctx(tmp_path, "r", tiny_model, [], pack=two_style_pack, per_prompt=3, bare=2)
    generate_pack(ctx, load)
    samples = ctx.paths.outputs / "sks_oil" / "samples"
    reference = {p.name: pixels(p) for p in samples.iterdir()}
    untouched = snapshot(ctx.paths.outputs / "sks_comic" / "samples")
    (samples / "0001.png").unlink()
    (ctx.paths.outputs / "sks_oil" / "sks_oil-0000.jpg").unlink()

    generate_pack(make_ctx(tmp_path, "r", tiny_model, events := [], pack=two_style_pack, per_prompt=3, bare=2), load)
    assert np.array_equal(pixels(samples / "0001.png"), reference["0001.png"])
    assert snapshot(ctx.paths.outputs / "sks_comic" / "samples") == untouched
    assert (ctx.paths.outputs / "sks_oil" / "sks_oil-0000.jpg").exists()
    assert [e.path for e in events if isinstance(e, SampleReady)] == [str(samples / "0001.png")]

    # a finished job needs no model at all
    def no_model() -> None:
        raise AssertionError("the model was loaded although every image exists")

    generate_pack(make_ctx(tmp_path, "r", tiny_model, [], pack=two_style_pack, per_prompt=3, bare=2), no_model)


def test_a_stopped_run_keeps_its_images_and_finishes_identically(
    tmp_path: Path, tiny_model: Path, two_style_pack: str
) -> None:
    def load() -> Components:
        return load_sd15(str(tiny_model))

    whole = make_ctx(tmp_path, "whole", tiny_model, [], pack=two_style_pack, per_prompt=3, bare=2)
    generate_pack(whole, load)

    stopped = make_ctx(tmp_path, "stopped", tiny_model, [], pack=two_style_pack, per_prompt=3, bare=2, stop_after=1)
    with pytest.raises(StopRequested):
        generate_pack(stopped, load)
    written = sorted(stopped.paths.outputs.rglob("*.png"))
    assert 0 < len(written) < 8, "the batches before the stop are on disk"
    generate_pack(make_ctx(tmp_path, "stopped", tiny_model, [], pack=two_style_pack, per_prompt=3, bare=2), load)
    for png in whole.paths.outputs.rglob("*.png"):
        twin = stopped.paths.outputs / png.relative_to(whole.paths.outputs)
        assert np.array_equal(pixels(png), pixels(twin)), png.name


def test_a_broken_pack_is_a_stage_error(tmp_path: Path, tiny_model: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[style]]\nkeyword = "x"\nprompt = "no token"\nseed = 1\n', encoding="utf-8")
    ctx = make_ctx(tmp_path, "bad", tiny_model, [], pack=str(bad))
    with pytest.raises(StageError) as info:
        generate_pack(ctx, lambda: load_sd15(str(tiny_model)))
    assert "{token}" in info.value.message and info.value.hint


def test_compiling_is_chosen_only_where_it_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    """From each family's measured speeds: SD 1.5's thresholds land where the H100 numbers put them, SDXL's whole
    UNet repays its 98 s from about 380 images, and Flux, whose compiled sampler is not measured, never compiles."""
    monkeypatch.delenv("IONCANNON_COMPILE", raising=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    sd15, sdxl, flux = (family_info(f).sampler_speeds for f in ("sd15", "sdxl", "flux"))
    assert compile_scope(cpu, 10_000, True, sd15) == ""
    assert compile_scope(cuda, 428, False, sd15) == "", "a default job's 428 images run quickest eagerly"
    assert compile_scope(cuda, 800, False, sd15) == "blocks", "the blocks compile in half the time"
    assert compile_scope(cuda, 5000, False, sd15) == "model"
    assert compile_scope(cuda, 200, True, sd15) == "model", "cached kernels make the whole model cheap"
    assert compile_scope(cuda, 100, True, sd15) == ""
    assert compile_scope(cuda, 300, False, sdxl) == "" and compile_scope(cuda, 450, False, sdxl) == "model"
    assert compile_scope(cuda, 100_000, True, flux) == ""
    # the break-even itself: eager up to it, compiled past it
    option = sd15.compiled[0]
    even = option.cold_s / (1 / sd15.eager_images_per_s - 1 / option.images_per_s)
    assert sd15.quickest(int(even) - 1, False) == "" and sd15.quickest(int(even) + 1, False) == "blocks"
    monkeypatch.setenv("IONCANNON_COMPILE", "0")
    assert compile_scope(cuda, 5000, True, sd15) == ""
    monkeypatch.setenv("IONCANNON_COMPILE", "1")
    assert compile_scope(cuda, 10, False, flux) == "model"


def test_regional_compilation_wraps_each_repeated_block_and_nothing_else(tiny_model: Path) -> None:
    unet = load_sd15(str(tiny_model)).unet
    blocks = [m for m in unet.modules() if type(m).__name__ in repeated_blocks(unet)]
    kinds = {type(m).__name__ for m in blocks}
    assert kinds == {"BasicTransformerBlock", "ResnetBlock2D"}
    assert compile_blocks(unet) == len(blocks)
    wrapped = [m for m in unet.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert wrapped == blocks, "only the repeated blocks are compiled; the UNet around them stays eager"
    assert torch._dynamo.config.recompile_limit >= 32, "one graph per block shape fits under the recompile limit"


def test_a_sampler_swapped_to_other_weights_draws_what_a_fresh_one_draws(tmp_path: Path, tiny_model: Path) -> None:
    other = save_tiny_model(tmp_path / "other", seed=7)
    cpu = torch.device("cpu")
    settings = dict(sampler="dpm", steps=STEPS, guidance=7.0, resolution=TINY_RESOLUTION, batch_size=2)
    prompts, negatives, seeds = ["a photo of zq dog", "a dog"], ["", ""], [3, 4]
    shared = ImageSampler(load_sd15(str(tiny_model)), cpu, torch.float32, **settings)  # type: ignore[arg-type]
    before = shared.sample(prompts, negatives, seeds)
    shared.swap_weights(load_sd15(str(other)))
    fresh = ImageSampler(load_sd15(str(other)), cpu, torch.float32, **settings)  # type: ignore[arg-type]
    after = shared.sample(prompts, negatives, seeds)
    assert np.array_equal(after, fresh.sample(prompts, negatives, seeds))
    assert not np.array_equal(after, before), "the swap changed what is drawn (and the cached prompts with it)"


def test_a_sampler_refuses_a_model_of_other_shapes(tmp_path: Path, tiny_model: Path) -> None:
    shared = ImageSampler(load_sd15(str(tiny_model)), torch.device("cpu"), torch.float32, steps=STEPS,
                          resolution=TINY_RESOLUTION, batch_size=2)
    parts = load_sd15(str(tiny_model))
    parts.unet = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="unet"):
        shared.swap_weights(parts)


def test_the_rate_a_run_reports_leaves_out_its_slow_first_batch(tmp_path: Path, tiny_model: Path) -> None:
    """A first batch slowed by warm-up (first kernels, autotuning, a compile) does not drag the reported rate, and
    the rate is not overstated by progress being told a batch late (the PNG writer runs one batch behind)."""
    import time

    from ioncannon.engine.generate.batches import fixed_batches, render
    from ioncannon.job.outputs import ImageJob

    sampler = ImageSampler(load_sd15(str(tiny_model)), torch.device("cpu"), torch.float32, steps=STEPS,
                           resolution=TINY_RESOLUTION, batch_size=2)
    real_sample, calls = sampler.sample, []

    def warming(*args: object) -> np.ndarray:
        if not calls:
            time.sleep(2.0)   # the first batch's warm-up
        out = real_sample(*args)  # type: ignore[arg-type]
        calls.append(time.perf_counter())
        return out

    sampler.sample = warming  # type: ignore[method-assign]
    jobs = [ImageJob(tmp_path / f"{i}.png", "a photo of sks person", "", i, "x") for i in range(6)]
    events: list[Event] = []
    started = time.perf_counter()
    render(sampler, fixed_batches(jobs, 2), stage="generate", emit=events.append, check_stop=lambda: None)
    end = time.perf_counter()
    last = [e for e in events if isinstance(e, Progress)][-1]
    assert last.done == 6 and len(calls) == 3
    assert last.rate > 6 / (end - started), "the warm-up is not counted"
    after_first = 4 / (end - calls[0])   # the images drawn after the first batch, over the time they took
    assert after_first <= last.rate < 1.3 * after_first, "nor are the first batch's images (6/4 would be 1.5x)"
