"""Sharded generation on the CPU: two processes write each class image and prompt-pack image once, as one would."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ioncannon.engine.context import StageContext
from ioncannon.engine.generate.batches import fixed_batches, shard
from ioncannon.engine.generate.stage import class_cache_dir
from ioncannon.engine.stages import stage_function
from ioncannon.engine.train.cache import run_cache
from ioncannon.engine.train.loop import run_training
from ioncannon.job.events import CollageReady, Event, Progress, SampleReady
from ioncannon.job.outputs import ImageJob
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import GeneratePlan
from ioncannon.job.prompts import PromptStyle, save_pack
from ioncannon.job.spec import save_spec
from tests.engine.test_train_support import CLASS, make_job

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("n", "batch", "world"), [(7, 2, 2), (5, 2, 2), (2, 2, 3), (16, 4, 4), (0, 2, 2)])
def test_shards_are_disjoint_whole_batches_that_cover_the_work(n: int, batch: int, world: int) -> None:
    jobs = [ImageJob(Path(f"{i:04d}.png"), "p", "", i) for i in range(n)]
    batches = fixed_batches(jobs, batch)
    shards = [shard(batches, r, world) for r in range(world)]
    made = Counter(j.path for s in shards for b in s for j in b)
    assert set(made) == {j.path for j in jobs} and all(c == 1 for c in made.values())
    assert all(b in batches for s in shards for b in s), "a shard's batches are the single-process batches"


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for p in sorted(folder.rglob("*.png")):
        with Image.open(p) as im:
            out[str(p.relative_to(folder))] = np.asarray(im.convert("RGB")).copy()
    return out


def _job_copy(src: Path, dst: Path, spec, events: list[Event]) -> StageContext:
    shutil.copytree(src, dst)
    return StageContext(spec=spec, paths=JobPaths(dst / "job"), workdir=dst, emit=events.append,
                        should_stop=lambda: False)


def test_two_processes_make_the_same_images_once_each(tmp_path: Path, tiny_model: Path) -> None:
    pack = tmp_path / "pack.toml"
    save_pack(pack, [PromptStyle("oil", "an oil painting of {token}", "", 11),
                     PromptStyle("sketch", "a pencil sketch of {token}", "blurry", 22)])
    ctx, _ = make_job(tmp_path / "base", tiny_model, steps=2, checkpoint_every=0, sample_every=0,
                      num_class_images=5, num_processes=2)
    spec = ctx.spec.replace(generate=GeneratePlan(steps=3, images_per_prompt=3, bare_token_images=1, batch_size=2,
                                                  prompt_pack=str(pack)))
    save_spec(ctx.paths, spec)
    ctx.spec = spec
    run_cache(ctx)
    run_training(ctx)
    # the class images stage makes them afresh: 5 images in batches of 2 split 2 : 1 over the ranks
    shutil.rmtree(ctx.paths.class_images(CLASS))
    one_events: list[Event] = []
    one = _job_copy(tmp_path / "base", tmp_path / "one", dataclasses.replace(
        spec, train=dataclasses.replace(spec.train, num_processes=1)), one_events)
    two_events: list[Event] = []
    two = _job_copy(tmp_path / "base", tmp_path / "two", spec, two_events)

    for stage in ("class_images", "generate"):  # through the runner's hook, which launches two processes
        stage_function(stage)(one)
        stage_function(stage)(two)

    one_class, two_class = _pngs(class_cache_dir(one)), _pngs(class_cache_dir(two))
    assert len(two_class) == 5 and one_class.keys() == two_class.keys()
    assert all(np.array_equal(one_class[k], two_class[k]) for k in one_class), "pixel for pixel"
    assert _pngs(two.paths.class_images(CLASS)).keys() == two_class.keys()
    one_out, two_out = _pngs(one.paths.outputs), _pngs(two.paths.outputs)
    assert len(two_out) == 7 and one_out.keys() == two_out.keys()
    assert all(np.array_equal(one_out[k], two_out[k]) for k in one_out), "pixel for pixel"

    written = Counter(e.path for e in two_events if isinstance(e, SampleReady) and e.stage == "generate")
    assert len(written) == 7 and set(written.values()) == {1}, "each image announced by the one rank that made it"
    collages = sorted(e.keyword for e in two_events if isinstance(e, CollageReady))
    assert collages == ["bare", "contact_sheet", "oil", "sketch"], "collages once, after both shards finished"
    final = [e for e in two_events if isinstance(e, Progress) and e.stage == "generate"][-1]
    assert final.done == final.total == 7, "progress adds up both ranks' shares"


@pytest.mark.parametrize("script", ["train_speed.py", "generate_speed.py"])
def test_benchmarks_offer_a_gpu_count(script: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(REPO / "bench" / script), "--help"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--gpus" in out.stdout and "scaling" in out.stdout
