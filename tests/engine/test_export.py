"""Export: the single LDM file, the fp16 diffusers folder and the model card round-trip on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ioncannon.engine.context import StageContext
from ioncannon.engine.export import export_model, export_targets, pickle_files
from ioncannon.engine.models.load import (
    Components,
    unet_config,
    vae_config,
)
from ioncannon.engine.weights.ldm_keys import KeyMappingError, unet_to_ldm, vae_to_ldm
from ioncannon.job.events import Event, Message, Progress
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import TrainPlan
from ioncannon.job.spec import JobSpec
from tests.engine.conftest import load_sd15


def trained(model: Path) -> Components:
    """The tiny model with every weight moved, as training would, so base weights can't pass for trained ones."""
    parts = load_sd15(str(model))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in (parts.unet, parts.vae, parts.text_encoder):
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return parts


def make_ctx(root: Path, model: Path, events: list[Event], mode: str = "full") -> StageContext:
    spec = JobSpec(name="e", photos_dir=str(root), identifier="zwx", class_name="cat", base_model=str(model),
                   resolution=64, device="cpu", train=TrainPlan(mode=mode, steps=321))  # type: ignore[arg-type]
    paths = JobPaths(root / "job")
    paths.ensure()
    return StageContext(spec=spec, paths=paths, workdir=root, emit=events.append, should_stop=lambda: False)


def assert_same_weights(loaded: torch.nn.Module, reference: torch.nn.Module, what: str) -> None:
    got, want = loaded.state_dict(), reference.state_dict()
    assert set(got) == set(want), f"{what}: key sets differ"
    for key, value in want.items():
        expected = value.to(torch.float16).float()
        assert torch.equal(got[key].float(), expected), f"{what}.{key} differs"


def test_single_file_and_diffusers_folder_round_trip(tmp_path: Path, tiny_model: Path) -> None:
    from diffusers import StableDiffusionPipeline

    ctx = make_ctx(tmp_path, tiny_model, events := [])
    targets = export_model(ctx, lambda: trained(tiny_model))
    reference = trained(tiny_model)

    with safe_open(str(targets.single_file), "pt") as fh:
        keys = set(fh.keys())
        assert {fh.get_slice(k).get_dtype() for k in keys} == {"F16"}
        assert fh.metadata()["ioncannon.prompt"] == "a photo of zwx cat"
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in keys

    single = StableDiffusionPipeline.from_single_file(
        str(targets.single_file), config=str(tiny_model), local_files_only=True, safety_checker=None,
        requires_safety_checker=False,
    )
    folder = StableDiffusionPipeline.from_pretrained(str(targets.diffusers), local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(single, name), getattr(reference, name), f"single file {name}")
        assert_same_weights(getattr(folder, name), getattr(reference, name), f"diffusers {name}")
    weights = sorted(targets.diffusers.rglob("*.safetensors"))
    assert len(weights) == 3
    for path in weights:
        with safe_open(str(path), "pt") as fh:
            # safe_open is not iterable, hence .keys()
            assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"F16"}, path.name  # noqa: SIM118

    card = targets.model_card.read_text(encoding="utf-8")
    for fact in (
        str(tiny_model),
        "`zwx`",
        "`cat`",
        "321 steps",
        "full",
        "a photo of zwx cat",
        targets.single_file.name,
    ):
        assert fact in card
    assert not targets.lora_kohya.exists()
    assert pickle_files(ctx.paths.root) == []
    assert not list(ctx.paths.trained_models.glob(".*partial*"))
    assert [e.done for e in events if isinstance(e, Progress)][-1] == 3


def test_a_finished_export_is_skipped(tmp_path: Path, tiny_model: Path) -> None:
    ctx = make_ctx(tmp_path, tiny_model, [])
    targets = export_model(ctx, lambda: trained(tiny_model))
    stamp = targets.single_file.stat().st_mtime_ns

    def no_model() -> Components:
        raise AssertionError("the model was loaded although the export is complete")

    export_model(make_ctx(tmp_path, tiny_model, events := []), no_model)
    assert targets.single_file.stat().st_mtime_ns == stamp
    assert any(isinstance(e, Message) for e in events)


def test_an_interrupted_export_writes_only_what_is_missing(tmp_path: Path, tiny_model: Path) -> None:
    ctx = make_ctx(tmp_path, tiny_model, [])
    targets = export_targets(ctx.spec, ctx.paths)
    export_model(ctx, lambda: trained(tiny_model))
    stamp = targets.single_file.stat().st_mtime_ns
    import shutil

    shutil.rmtree(targets.diffusers)
    (targets.diffusers.parent / f".{targets.diffusers.name}.partial").mkdir()  # debris of a killed run
    export_model(make_ctx(tmp_path, tiny_model, []), lambda: trained(tiny_model))
    assert targets.single_file.stat().st_mtime_ns == stamp
    assert (targets.diffusers / "model_index.json").exists()
    assert not (targets.diffusers.parent / f".{targets.diffusers.name}.partial").exists()


def test_sd15_layout_agrees_with_diffusers_own_converter() -> None:
    """On the real SD1.5 shapes (meta tensors, no memory): diffusers' LDM reader maps every key back to its origin."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config("sd15"))
        vae = AutoencoderKL(**vae_config("sd15"))
    state = unet.state_dict()
    ldm = unet_to_ldm(state, unet.config)
    assert len(ldm) == len(state) == 686
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in ldm      # first upsampler, no attention
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in ldm      # upsampler after attention
    assert "model.diffusion_model.input_blocks.6.0.op.weight" in ldm
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in ldm
    back = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    assert set(back) == set(state)
    assert all(back[k] is state[k] for k in state), "every tensor returns to the key it came from"

    vstate = vae.state_dict()
    vldm = vae_to_ldm(vstate, vae.config)
    assert vldm["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    vback = convert_ldm_vae_checkpoint(vldm, dict(vae.config))
    assert set(vback) == set(vstate)
    assert all(vback[k].shape == vstate[k].shape for k in vstate)
    assert all(vback[k] is vstate[k] for k in vstate if "attentions" not in k)


def test_an_unknown_weight_is_refused() -> None:
    with pytest.raises(KeyMappingError, match="no place"):
        unet_to_ldm({"controlnet_cond_embedding.conv_in.weight": torch.zeros(1)}, unet_config("tiny"))
