"""Fixtures of the engine tests: one torch thread, and the tiny model of each family saved once per test run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ioncannon.engine.models.load import Components, save_tiny_model
from tests.engine.test_train_support import single_thread


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ioncannon.engine.families import family_for

    return family_for("sdxl").save_tiny(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ioncannon.engine.families import family_for

    return family_for("flux").save_tiny(tmp_path_factory.mktemp("flux") / "tiny-flux")


def load_sd15(source: str, dtype: torch.dtype = torch.float32) -> Components:
    """A tiny SD 1.5-shaped model's parts, loaded the way the stages load a base model (through its family)."""
    from ioncannon.engine.families import family_for

    return family_for("sd15").load(source, dtype)
