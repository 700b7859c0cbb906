"""Fixtures of the terminal tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.tmuxdriver import Tmux


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    """An 80×24 terminal of its own; closed (and everything in it killed) after the test."""
    driver = Tmux(80, 24)
    yield driver
    driver.close()
