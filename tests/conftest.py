"""Shared fixtures: a tiny SD-shaped model saved once per test run, and isolated work dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the hub or the user's real work dir.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ioncannon.engine.models.load import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wd = tmp_path / "work"
    wd.mkdir()
    monkeypatch.setenv("IONCANNON_WORKDIR", str(wd))
    return wd
