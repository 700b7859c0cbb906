"""Fixtures of the engine tests: one torch thread, and the tiny model of each family saved once per test run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ioncannon.engine.models.load import save_tiny_model
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
