"""The wizard in a real terminal: quitting never waits on the network, and leaving says how to come back."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioncannon.tui.session import SessionStore, WizardSession
from tests.e2e.tmuxdriver import Tmux
from tests.hanging_hub import hanging_hub
from tests.waiting import patience

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def hanging_hub_url() -> Iterator[str]:
    with hanging_hub() as hub:
        yield hub.url


def test_quit_on_a_box_whose_hub_hangs_is_prompt_and_says_how_to_come_back(
        tmux: Tmux, tmp_path: Path, hanging_hub_url: str) -> None:
    wd = tmp_path / "work"
    SessionStore(wd, WizardSession()).update(step="subject", identifier="qwvz", photos_dir=str(tmp_path),
                                             base_model="someone/never-cached-model")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TERM": "xterm-256color",
           "HF_ENDPOINT": hanging_hub_url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    tmux.start("wizard", f"sh -c '{sys.executable} -m ioncannon --workdir {wd}; echo EXIT=$?'", env)
    tmux.wait_for("wizard", "checking 'qwvz'", 30)
    tmux.type("wizard", "q")  # a stray q types at the end of the answer: it neither quits nor replaces it
    tmux.wait_for("wizard", "qwvzq")
    tmux.send("wizard", "BSpace", "C-q")
    asked = time.monotonic()
    screen = tmux.wait_for("wizard", "EXIT=0", 10)
    assert time.monotonic() - asked < patience(10)
    # the parting line: `ioncannon --workdir …` brings the answers back (compared without the terminal's line breaks:
    # a long work dir wraps the sentence at 80 columns)
    assert "".join(f"{wd}` to carry on".split()) in "".join(screen.split())
