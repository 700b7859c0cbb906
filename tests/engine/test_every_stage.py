"""A whole job of every family through the real runner on its tiny model: the next family gets this for free."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ioncannon.engine.demo import demo_spec
from ioncannon.engine.export import export_targets
from ioncannon.engine.families import family_for
from ioncannon.engine.weights.trained import trained_info
from ioncannon.job import handle
from ioncannon.job.events import Message, SampleReady, StageFinished
from ioncannon.job.families import FAMILY_NAMES, family_info
from ioncannon.job.lock import wait_for_exit
from ioncannon.job.stages import STAGE_NAMES
from ioncannon.job.state import EventTail, read_state
from ioncannon.job.workdir import create_job

# the widest path a family offers beyond its demo plan: SDXL's LoRA on the UNet and both text towers
WIDEST: dict[str, dict[str, Any]] = {
    "sdxl": {"mode": "lora", "train_text_encoder": True, "learning_rate": 1e-3, "lora_rank": 4},
}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_stage_runs_on_the_familys_tiny_model_through_the_runner(workdir: Path, family: str) -> None:
    spec = demo_spec(workdir, name=f"every-{family}", family=family)
    info, seam = family_info(family), family_for(family)
    assert spec.train.prior_preservation == info.prior_preservation  # the family's defaults, on the demo too
    spec = spec.replace(
        train=dataclasses.replace(spec.train, steps=24, checkpoint_every=12, sample_every=12, num_class_images=4,
                                  **WIDEST.get(family, {})),
        generate=dataclasses.replace(spec.generate, images_per_prompt=1, bare_token_images=1, steps=3),
    )
    paths = create_job(workdir, spec)
    events = EventTail(paths.events_file)
    handle.start(paths, workdir)
    assert wait_for_exit(paths, 600), "the runner did not finish"
    state = read_state(paths)
    assert state.status == "finished", (state.message, state.hint)
    seen = events.read_new()
    finished = [e.stage for e in seen if isinstance(e, StageFinished) and not e.skipped]
    assert finished[:6] == [s for s in STAGE_NAMES if s != "fetch"][:6]
    assert [e.stage for e in seen if isinstance(e, StageFinished) and e.skipped] == ["fetch"]  # a local model
    if not spec.train.prior_preservation:
        assert any(isinstance(e, Message) and "Prior preservation is off" in e.text for e in seen)
    previews = [e for e in seen if isinstance(e, SampleReady) and e.stage == "train"]
    assert len(previews) == 2 and all(Path(e.path).is_file() for e in previews)

    trained = trained_info(paths)
    assert trained is not None and trained["mode"] == spec.train.mode
    assert bool(trained["text_encoders"]) == spec.train.train_text_encoder
    lora = spec.train.mode == "lora"
    if lora:
        adapted = seam.lora_targets
        assert trained["lora"]["target_modules_unet"] == (adapted if isinstance(adapted, str) else list(adapted))
    targets = export_targets(spec, paths)
    for target in targets.wanted(lora=lora, full_model=seam.exports_full_model):
        assert target.exists(), target
    if not seam.exports_full_model:
        assert not targets.single_file.exists() and not targets.diffusers.exists()
    assert sorted(paths.outputs.glob("*/*-0000.jpg")) and (paths.outputs / "contact_sheet.jpg").is_file()
    # class images and the pack are drawn at the family's (here the demo's) resolution
    with Image.open(next(paths.outputs.glob("*/samples/*.png"))) as im:
        assert im.size == (spec.resolution, spec.resolution)
    if spec.train.prior_preservation:
        with Image.open(next(paths.class_images(spec.class_name).glob("*.png"))) as im:
            assert im.size == (spec.resolution, spec.resolution)
