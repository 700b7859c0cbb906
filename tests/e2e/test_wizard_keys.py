"""The wizard in a real terminal: quitting never waits on the network, and leaving says how to come back."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioncannon.tui.session import SessionStore, WizardSession
from tests.e2e.tmuxdriver import Tmux
from tests.waiting import patience

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    driver = Tmux(80, 24)
    yield driver
    driver.close()


@pytest.fixture
def hanging_hub() -> Iterator[str]:
    """A model hub that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def test_quit_on_a_box_whose_hub_hangs_is_prompt_and_says_how_to_come_back(
        tmux: Tmux, tmp_path: Path, hanging_hub: str) -> None:
    wd = tmp_path / "work"
    SessionStore(wd, WizardSession()).update(step="subject", identifier="qwvz", photos_dir=str(tmp_path),
                                             base_model="someone/never-cached-model")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TERM": "xterm-256color",
           "HF_ENDPOINT": hanging_hub, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    tmux.start("wizard", f"sh -c '{sys.executable} -m ioncannon --workdir {wd}; echo EXIT=$?'", env)
    tmux.wait_for("wizard", "checking 'qwvz'", 30)
    tmux.type("wizard", "q")  # a stray q types at the end of the answer: it neither quits nor replaces it
    tmux.wait_for("wizard", "qwvzq")
    tmux.send("wizard", "BSpace", "C-q")
    asked = time.monotonic()
    screen = tmux.wait_for("wizard", "EXIT=0", 10)
    assert time.monotonic() - asked < patience(10)
    assert f"{wd}` to carry on" in screen  # the parting line: `ioncannon --workdir …` brings the answers back
