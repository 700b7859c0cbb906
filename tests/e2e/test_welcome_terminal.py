"""The real `ioncannon` in an 80×24 terminal after a job failed: every job listed, enter never runs it again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ioncannon.job import handle
from ioncannon.job.families import family_info
from ioncannon.job.fsio import write_json
from ioncannon.job.plan.demo import demo_photos_dir
from ioncannon.job.spec import JobSpec
from ioncannon.job.state import JobState, read_state
from tests.e2e.tmuxdriver import Tmux


def test_a_failed_job_is_listed_and_enter_starts_a_new_one(tmux: Tmux, tmp_path: Path) -> None:
    wd = tmp_path / "work"
    spec = JobSpec(name="doomed-20270101-0000", photos_dir=str(demo_photos_dir()), identifier="zwx",
                   class_name="dog", device="cpu", family="sdxl", resolution=1024,
                   base_model=family_info("sdxl").default_model)
    paths = handle.create(wd, spec)
    write_json(paths.state_file, JobState(status="failed", stage="cache", message="could not download base model "
               "stabilityai/stable-diffusion-xl-base-1.0", updated_at=time.time() - 60).to_json())
    ioncannon = f"{sys.executable} -m ioncannon --workdir {wd}"
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TERM": "xterm-256color"}

    tmux.start("one", f"{ioncannon} --demo", env)  # the demo lists the real job, labelled as such
    screen = tmux.wait_for("one", "doomed-20270101-0000", 30)
    assert "failed" in screen and "SDXL" in screen and "a new job" in screen
    tmux.send("one", "Enter")  # out of habit: the first row, a new job, never the failed one
    tmux.wait_for("one", "Photos", 30)
    time.sleep(1.0)
    assert not handle.is_alive(paths) and read_state(paths).status == "failed"
    tmux.send("one", "Escape")
    tmux.wait_for("one", "doomed-20270101-0000", 30)
    tmux.send("one", "Down", "d")  # delete asks first, and only y deletes
    tmux.wait_for("one", "Delete doomed-20270101-0000?", 30)
    tmux.send("one", "y")
    tmux.wait_for("one", "no jobs in this work dir yet", 30)
    assert not paths.root.exists() and demo_photos_dir().is_dir()
