"""Loading base models: local folder, single file, hub id offline, and clear messages for bad sources."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ioncannon.engine.models.load import (
    ModelLoadError,
    build_components,
    classify_source,
    resolve_device,
    save_tiny_model,
)
from tests.engine.conftest import load_sd15


def test_tiny_model_folder_loads_with_real_shapes(tiny_model_dir: Path) -> None:
    parts = load_sd15(str(tiny_model_dir))
    assert parts.unet.config.sample_size * 8 == 64
    assert parts.vae.config.scaling_factor == pytest.approx(0.18215)
    assert parts.noise_scheduler.config.num_train_timesteps == 1000
    ids = parts.tokenizer("a photo of zwx person").input_ids
    assert ids[0] == parts.tokenizer.bos_token_id and ids[-1] == parts.tokenizer.eos_token_id
    with torch.no_grad():
        hidden = parts.text_encoder(torch.tensor([ids]))[0]
    assert hidden.shape[-1] == parts.unet.config.cross_attention_dim


def test_save_tiny_model_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    a = load_sd15(str(save_tiny_model(tmp_path / "a", seed=3)))
    b = load_sd15(str(save_tiny_model(tmp_path / "b", seed=3)))
    for (name, pa), (_, pb) in zip(a.unet.state_dict().items(), b.unet.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    assert save_tiny_model(tmp_path / "a", seed=99) == tmp_path / "a"  # existing folder is kept


def test_sd15_shapes_match_the_reference() -> None:
    from ioncannon.engine.models.load import text_config, unet_config

    assert unet_config("sd15")["block_out_channels"] == (320, 640, 1280, 1280)
    assert text_config("sd15", 0)["num_hidden_layers"] == 12
    tiny = build_components("tiny")
    assert sum(p.numel() for p in tiny.unet.parameters()) < 2_000_000


@pytest.mark.parametrize(
    "source, kind",
    [("stable-diffusion-v1-5/stable-diffusion-v1-5", "hub"), ("/no/such/model.safetensors", "missing"),
     ("./nope", "missing")],
)
def test_classify_source(source: str, kind: str) -> None:
    assert classify_source(source) == kind


def test_missing_and_pickled_sources_are_refused_with_advice(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_sd15(str(tmp_path / "gone.safetensors"))
    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelLoadError, match="only .safetensors"):
        load_sd15(str(pickled))


def test_hub_id_without_network_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as err:
        load_sd15("stable-diffusion-v1-5/stable-diffusion-v1-5")
    text = str(err.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in text and "Traceback" not in text
    assert "no connection to the Hugging Face Hub" in text and "local diffusers folder" in text


def test_cuda_requested_without_a_gpu_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ModelLoadError, match="No CUDA GPU"):
        resolve_device("cuda")
