"""Tiny models laid out as hub repositories (plain and fp16 weights, files no job needs), and the env to reach them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hanging_hub import LocalHub

# Files a real SD 1.5 repository carries that no job downloads: the safety checker, pickled weights, a root checkpoint
UNNEEDED = {
    "v1-5-pruned-emaonly.safetensors": os.urandom(150_000),
    "unet/diffusion_pytorch_model.bin": os.urandom(120_000),
    "safety_checker/config.json": b"{}",
    "safety_checker/model.safetensors": os.urandom(200_000),
}


def sd15_repo(tiny_model: Path, into: Path) -> Path:
    """The tiny SD 1.5 model as the hub holds SD 1.5: fp32 and fp16 weights side by side, and UNNEEDED."""
    import torch
    from diffusers import StableDiffusionPipeline

    if (into / "model_index.json").exists():
        return into
    shutil.copytree(tiny_model, into)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model), safety_checker=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(str(into), variant="fp16", safe_serialization=True)
    index = json.loads((into / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    (into / "model_index.json").write_text(json.dumps(index))
    for name, data in UNNEEDED.items():
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_bytes(data)
    return into


PADDED = "unet/diffusion_pytorch_model.fp16.safetensors"


def pad_weights(repo: Path, extra_bytes: int) -> Path:
    """A copy of `repo` whose fp16 UNet file carries an unused tensor: big enough that huggingface_hub writes part of
    it (it writes 10 MB at a time) before the download ends, so a kill can leave a partial file behind."""
    import torch
    from safetensors.torch import load_file, save_file

    padded = repo.with_name(repo.name + "-padded")
    if not padded.exists():
        shutil.copytree(repo, padded)
        tensors = load_file(str(padded / PADDED))
        tensors["unused_padding"] = torch.arange(extra_bytes // 2, dtype=torch.int16).view(torch.float16)
        save_file(tensors, str(padded / PADDED), metadata={"format": "pt"})
    return padded


def point_at(hub: LocalHub, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every hub call of this process and of the runners it starts to `hub`, caching under `home`."""
    import huggingface_hub.constants as constants

    for name, value in (("HF_ENDPOINT", hub.url), ("HF_HOME", str(home)), ("HF_HUB_OFFLINE", "0"),
                        ("TRANSFORMERS_OFFLINE", "0"), ("HF_HUB_DISABLE_XET", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # huggingface_hub read these once at import; the runners read them from the environment above
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


def cached_files(home: Path, repo: str) -> Iterator[str]:
    """Paths of the files complete in the cached snapshot(s) of `repo`."""
    root = home / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots"
    for snapshot in root.glob("*"):
        for p in snapshot.rglob("*"):
            if p.is_file():
                yield p.relative_to(snapshot).as_posix()
