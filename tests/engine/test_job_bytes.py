"""The door's disk estimate sizes a local model by its own weights, not by the family's published model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ioncannon.engine.hub_files import job_bytes, local_params
from ioncannon.job.plans import TrainPlan
from ioncannon.job.spec import JobSpec


def _spec(model: str) -> JobSpec:
    plan = dataclasses.replace(TrainPlan(), mode="full", steps=1000, checkpoint_every=100)
    return JobSpec(name="j", photos_dir="/nowhere", identifier="zwx", class_name="dog", base_model=model,
                   family="sd15", resolution=512, train=plan)


def test_a_tiny_local_model_needs_megabytes_not_the_published_models_gigabytes(tiny_model_dir: Path) -> None:
    params = local_params(str(tiny_model_dir))
    assert 0 < params < 10_000_000          # read from the safetensors headers
    tiny, published = job_bytes(_spec(str(tiny_model_dir))), job_bytes(_spec("stable-diffusion-v1-5/x"))
    assert published > 10e9                 # three full checkpoints of an 860 M UNet with Adam moments
    assert tiny < published / 100


def test_unreadable_weights_keep_the_published_size(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    assert local_params(str(tmp_path)) == 0
    assert job_bytes(_spec(str(tmp_path))) == job_bytes(_spec("stable-diffusion-v1-5/x"))
