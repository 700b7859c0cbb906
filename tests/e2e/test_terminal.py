"""The real CLI in a real terminal (tmux): walk the demo, kill the terminal mid-training, come back."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from ioncannon.job.lock import runner_pid, wait_for_exit
from ioncannon.job.paths import JobPaths
from ioncannon.job.state import read_state
from tests.e2e.tmuxdriver import Tmux
from tests.waiting import patience, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _job(workdir: Path) -> JobPaths:
    (root,) = [p for p in workdir.iterdir() if (p / ".ioncannon" / "job.json").exists()]
    return JobPaths(root)


def _steps_on_screen(screen: str) -> int:
    found = re.search(r"(\d+)/(\d+) steps", screen)
    return int(found.group(1)) if found else -1


def test_demo_survives_a_killed_terminal_and_reattaches(tmux: Tmux, tmp_path: Path) -> None:
    wd = tmp_path / "work"
    ioncannon = f"{sys.executable} -m ioncannon --workdir {wd}"
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TERM": "xterm-256color"}

    tmux.start("first", f"{ioncannon} --demo", env)
    tmux.wait_for("first", "a new job", 30)
    tmux.send("first", "Enter")
    tmux.wait_for("first", "Photos")
    tmux.send("first", "Enter")
    tmux.wait_for("first", "photos will be used", 60)
    tmux.send("first", "Enter")
    tmux.wait_for("first", "a photo of zwx person")
    tmux.send("first", "Enter")
    tmux.wait_for("first", "images each")  # the prompt pack: Enter takes it as it is
    tmux.send("first", "Enter")
    tmux.wait_for("first", "Hardware and plan")
    tmux.wait_for("first", "for the whole job", 60)  # the probe finished and a plan fits
    tmux.send("first", "Enter")
    tmux.wait_for("first", "Start training?")
    tmux.send("first", "Enter")

    wait_until(lambda: any(p.is_dir() for p in wd.iterdir() if (p / ".ioncannon" / "job.json").exists()), 30, "the job")
    paths = _job(wd)
    wait_until(lambda: read_state(paths).stage == "train" and read_state(paths).done > 0, 180, "training to start")
    screen = tmux.wait_for("first", "steps", 30)
    assert "Train" in screen

    tmux.kill_session("first")  # the SSH link drops: the terminal and the TUI die
    time.sleep(1.0)
    assert runner_pid(paths) is not None, "the runner must outlive the terminal"
    step_at_kill = read_state(paths).done

    tmux.start("second", ioncannon, env)  # the person types `ioncannon` again (no --demo)
    tmux.wait_for("second", paths.root.name, 30)
    tmux.send("second", "Enter")  # attach
    # "steps" shows on the welcome card too: wait for the training screen's counter itself
    wait_until(lambda: _steps_on_screen(tmux.screen("second")) >= 0, 30, "the step counter")
    first_seen = _steps_on_screen(tmux.screen("second"))
    assert first_seen >= step_at_kill
    # the attached screen shows the live job advancing
    wait_until(lambda: _steps_on_screen(tmux.screen("second")) > first_seen, 60, "the step counter to advance")

    assert wait_for_exit(paths, patience(300))
    final = read_state(paths)
    assert final.status == "finished", (final.message, final.hint)
    tmux.wait_for("second", "All images are made", 60)  # generate stays with the pictures…
    tmux.send("second", "Enter")  # …until the person moves on
    tmux.wait_for("second", "DESTROY", 60)  # the finish screen's last words
    collages = sorted(paths.root.glob("outputs/zwx_*/zwx_*-0000.jpg"))
    assert len(collages) >= 8
    assert (paths.root / "trained_models" / "zwx_model.safetensors").exists()
