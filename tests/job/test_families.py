"""Model families in the torch-free core: the spec's family, recognising a model on disk, plans per family."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from ioncannon.job.families import (
    FAMILIES,
    detect_family,
    family_info,
    mismatch_message,
    offered_families,
    safetensors_keys,
)
from ioncannon.job.plan.presets import preset_plan
from ioncannon.job.spec import JobSpec
from ioncannon.job.validate import SpecError


def fake_checkpoint(path: Path, keys: list[str]) -> Path:
    """A .safetensors file with these tensor names (one fp16 zero each): only its header matters here."""
    header = {k: {"dtype": "F16", "shape": [1], "data_offsets": [2 * i, 2 * i + 2]} for i, k in enumerate(keys)}
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0\0" * len(keys))
    return path


def test_old_job_files_read_as_sd15_and_unknown_families_are_refused() -> None:
    old = {"name": "a", "photos_dir": "p", "identifier": "zwx", "class_name": "dog"}  # written before families
    assert JobSpec.from_json(old).family == "sd15"
    assert JobSpec.from_json({**old, "family": "sdxl"}).family == "sdxl"
    with pytest.raises(SpecError, match='family "sd3" is not a model family: write one of sd15, sdxl, flux'):
        JobSpec.from_json({**old, "family": "sd3"})


def test_each_family_says_what_the_wizard_shows() -> None:
    sdxl = family_info("sdxl")
    assert (sdxl.default_model, sdxl.default_resolution) == ("stabilityai/stable-diffusion-xl-base-1.0", 1024)
    assert 768 in sdxl.resolutions and sdxl.prior_preservation and sdxl.prior_why
    assert family_info("flux").lora_only and "Non-Commercial" in family_info("flux").licence
    # the wizard offers only families with training plans
    assert [f.name for f in offered_families()] == ["sd15", "sdxl", "flux"]
    flux = family_info("flux")
    assert flux.resolutions == (1024, 512) and not flux.prior_preservation and "class" in flux.prior_why
    assert "gated" in flux.notice and "hf auth login" in flux.notice
    with pytest.raises(ValueError, match="unknown model family"):
        family_info("sd3")


def test_presets_take_the_family_learning_rate() -> None:
    assert preset_plan("recommended", "full", "sdxl").learning_rate == FAMILIES["sdxl"].full_lr
    assert preset_plan("recommended", "lora", "sdxl").learning_rate == FAMILIES["sdxl"].lora_lr
    assert preset_plan("recommended", "full", "sd15").learning_rate == 2e-6  # SD 1.5: the recipe as written
    # Flux: LoRA, no class images, and the classic preset's text-encoder training does not apply
    classic = preset_plan("classic", "lora", "flux")
    assert not classic.prior_preservation and not classic.train_text_encoder and classic.mode == "lora"


@pytest.mark.parametrize(("keys", "family"), [
    (["conditioner.embedders.1.model.positional_embedding", "model.diffusion_model.out.2.weight"], "sdxl"),
    (["model.diffusion_model.label_emb.0.0.weight"], "sdxl"),
    (["cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"], "sd15"),
    (["double_blocks.0.img_attn.qkv.weight"], "flux"),
    (["cond_stage_model.model.positional_embedding"], None),  # SD 2.x: not a family this version trains
])
def test_a_single_file_is_recognised_by_its_keys_not_its_name(tmp_path: Path, keys: list[str],
                                                              family: str | None) -> None:
    path = fake_checkpoint(tmp_path / "sdxl_sd15_flux_anything.safetensors", keys)
    assert safetensors_keys(path) == keys
    assert detect_family(str(path)) == family


def test_folders_hub_ids_and_junk(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    assert detect_family(str(folder)) == "sdxl"
    assert detect_family("stabilityai/stable-diffusion-xl-base-1.0") == "sdxl"  # a family's own hub model
    assert detect_family("someone/their-finetune") is None  # any other hub id is taken at its word
    junk = tmp_path / "not-really.safetensors"
    junk.write_bytes(b"\xff" * 64)
    assert detect_family(str(junk)) is None


def test_a_mismatch_is_one_sentence_that_says_what_to_do() -> None:
    text = mismatch_message("/models/realvis.safetensors", "sdxl", "sd15")
    assert text == ("realvis.safetensors is an SDXL model but the job is set to SD 1.5: pick SDXL as the model "
                    "family or choose an SD 1.5 base model.")


def test_a_flux_job_file_gets_the_lora_recipe_and_a_full_fine_tune_is_refused(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.job.jobfile import read_jobfile
    from ioncannon.job.plan.box import GpuInfo, HardwareInfo
    from ioncannon.job.plan.planner import Plan, Problems, plan_job

    box = HardwareInfo([GpuInfo(0, "NVIDIA H100", 80.0, 79.0)], 500.0, 8, 64.0)
    base = {"photos_dir": str(tmp_path), "identifier": "zwx", "class_name": "man", "family": "flux"}
    jobfile = tmp_path / "job.json"
    work = tmp_path.parent / f"{tmp_path.name}-work"

    def planned(data: dict) -> Plan | Problems:
        jobfile.write_text(json.dumps(data))
        return plan_job(read_jobfile(jobfile, work), box)

    monkeypatch.setenv("HF_TOKEN", "hf_test")  # FLUX.1-dev is gated: without a login the door says how to log in
    plan = planned(base)
    assert isinstance(plan, Plan), plan
    spec = plan.spec
    assert (spec.base_model, spec.resolution) == ("black-forest-labs/FLUX.1-dev", 1024)
    assert spec.train.mode == "lora" and spec.train.lora_rank == 16 and spec.train.learning_rate == 1e-4
    assert not spec.train.prior_preservation and (spec.generate.steps, spec.generate.guidance) == (28, 3.5)
    plan = planned({**base, "train": {"prior_preservation": True, "steps": 600}})
    assert isinstance(plan, Plan), plan
    assert plan.spec.train.prior_preservation and plan.spec.train.steps == 600 and plan.spec.train.mode == "lora"
    refused = planned({**base, "train": {"mode": "full"}})
    assert isinstance(refused, Problems)
    assert any('trains LoRA only here: write "lora"' in p for p in refused.sentences)
