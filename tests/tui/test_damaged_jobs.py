"""The wizard shows damaged job files honestly: what can't be read, and the way out, never a crash."""

from __future__ import annotations

import os
import time
from pathlib import Path

from textual.widgets import Static

from ioncannon.engine.demo import demo_photos_dir
from ioncannon.job import handle
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.screens.welcome import WelcomeScreen

from .conftest import shown, wait_for


def make_job(workdir: Path, name: str) -> JobPaths:
    spec = JobSpec(name=name, photos_dir=str(demo_photos_dir()), identifier="zwx", class_name="dog", device="cpu")
    return handle.create(workdir, spec)


async def test_welcome_shows_damaged_state_and_job_files_with_a_way_out(tui_workdir: Path, tmp_path: Path) -> None:
    lost = make_job(tui_workdir, "lost-settings")
    lost.job_file.write_bytes(b'{"name": "lost\xff"')  # not UTF-8, not even JSON
    time.sleep(0.01)
    hurt = make_job(tui_workdir, "hurt-state")
    hurt.state_file.write_bytes(b'{"schema_version": 1, "status": "running", "elapsed_s": "long"}')
    os.utime(hurt.job_file)  # the newest job: the one welcome offers

    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        welcome = app.screen
        assert isinstance(welcome, WelcomeScreen)
        text = " ".join(shown(app.screen.query_one("#welcome-job", Static)).split())
        assert welcome.unfinished is not None and welcome.unfinished.name == "hurt-state"
        assert welcome.action == "resume"  # a damaged progress file is rebuilt by resuming
        assert "progress file can't be read" in text and "elapsed_s" in text
        await pilot.press("down")  # the older job, whose settings can't be read: listed, with a way out
        text = " ".join(shown(app.screen.query_one("#welcome-job", Static)).split())
        assert "Job lost-settings can't be read" in text and "ioncannon wipe lost-settings" in text
