"""Keyboard only, every screen, the real engine: from the welcome screen to a finished tiny job."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from textual.widgets import DataTable, Input, Static

from ioncannon.job.plan.demo import demo_photos_dir
from ioncannon.job.prompts import load_pack
from ioncannon.job.spec import load_spec
from ioncannon.job.workdir import list_jobs
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs.choice import ChoiceDialog
from ioncannon.tui.dialogs.style import StyleDialog
from ioncannon.tui.screens.check import CheckScreen
from ioncannon.tui.screens.generate import GenerateScreen
from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.screens.photos import PhotosScreen
from ioncannon.tui.screens.prompts import PromptsScreen
from ioncannon.tui.screens.subject import SubjectScreen
from ioncannon.tui.screens.train import TrainScreen
from ioncannon.tui.screens.welcome import WelcomeScreen
from ioncannon.tui.session import load_session

from .conftest import shown, wait_for

SHOTS = os.environ.get("IONCANNON_SCREENSHOTS", "")  # set it to keep an SVG of each screen for a look


def shoot(app: IonCannonApp, name: str) -> None:
    if SHOTS:
        app.save_screenshot(f"{name}.svg", SHOTS)


async def test_keyboard_walk_from_welcome_to_finish(tui_workdir: Path, small_demo: Callable[..., None],
                                                    tmp_path: Path) -> None:
    app = IonCannonApp(tui_workdir, demo=True, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        shoot(app, "welcome")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PhotosScreen), what="photos")
        assert app.screen.query_one("#photos-path", Input).value == str(demo_photos_dir())

        # a folder that does not exist is refused inline, and the screen stays
        await pilot.press("ctrl+u", *"/nowhere/at/all", "enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, PhotosScreen)
        assert "does not exist" in shown(app.screen.query_one("#photos-message", Static))
        await pilot.press("ctrl+u", *str(demo_photos_dir()))
        shoot(app, "photos")
        await pilot.press("ctrl+n")

        await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
        check = app.screen
        assert isinstance(check, CheckScreen)
        table = check.query_one(DataTable)
        files = sorted(p.name for p in demo_photos_dir().iterdir())
        assert table.row_count == len(files)
        used_before = len(check.used())
        assert used_before >= 5
        first = check.selected()
        assert first is not None
        crop_before = check.crop_of(first)
        await pilot.press("c")
        chosen_crop = check.crop_of(first)
        assert chosen_crop != crop_before
        assert load_session(tui_workdir, demo=True).crops[first.file] == chosen_crop
        await pilot.press("down", "d")
        dropped = check.selected()
        assert dropped is not None and check.dropped(dropped)
        assert len(check.used()) == used_before - 1
        await pilot.pause(0.5)
        shoot(app, "check")
        await pilot.press("ctrl+n")

        await wait_for(pilot, lambda: isinstance(app.screen, SubjectScreen), what="subject")
        identifier = app.screen.query_one("#subject-identifier", Input)
        assert identifier.value == "zwx"
        await pilot.press("ctrl+u", *"zw/x", "ctrl+n")
        assert isinstance(app.screen, SubjectScreen)  # the '/' is an error: next is blocked
        await pilot.press("ctrl+u", *"qwv")
        assert "a photo of qwv person" in shown(app.screen.query_one("#subject-prompt", Static))
        shoot(app, "subject")
        await pilot.press("ctrl+n")

        await wait_for(pilot, lambda: isinstance(app.screen, PromptsScreen), what="prompts")
        prompts = app.screen
        assert isinstance(prompts, PromptsScreen)
        assert [s.keyword for s in prompts.pack_styles] == ["oil", "comic"]
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, StyleDialog), what="style dialog")
        await pilot.press(*"Pirate", "enter")  # the pack refuses an upper-case keyword: said inline
        assert isinstance(app.screen, StyleDialog)
        assert "lower-case" in shown(app.screen.query_one("#style-error", Static))
        await pilot.press("ctrl+u", *"pirate", "tab", "ctrl+e", *"as a pirate", "enter")
        await wait_for(pilot, lambda: app.screen is prompts, what="back on prompts")
        assert [s.keyword for s in prompts.pack_styles] == ["oil", "comic", "pirate"]
        await pilot.press("up", "space")  # comic off
        assert [s["enabled"] for s in load_session(tui_workdir, demo=True).prompt_styles or []] == [True, False, True]
        shoot(app, "prompts")
        await pilot.press("enter")

        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       timeout=120, what="hardware probe and the demo model")
        await pilot.press(*"1.5", "tab", *"90m")
        shoot(app, "hardware")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="confirm dialog")
        await pilot.press("enter")

        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen), timeout=120, what="train screen")
        await wait_for(pilot, lambda: app.job_view.losses, timeout=120, what="training steps")
        shoot(app, "train")
        await wait_for(pilot, lambda: isinstance(app.screen, GenerateScreen), timeout=120, what="generate screen")
        await wait_for(pilot, lambda: app.job_view.state.status == "finished", timeout=180, what="every image")
        await pilot.pause(0.5)
        assert isinstance(app.screen, GenerateScreen)  # it stays with the pictures until the person moves on
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FinishScreen", what="finish")
        shoot(app, "finish")

    (job,) = list_jobs(tui_workdir)
    assert job.state.status == "finished"
    spec = load_spec(job.paths)
    # what the person chose on the screens is what the runner ran
    assert (spec.identifier, spec.class_name, spec.hourly_price, spec.demo) == ("qwv", "person", 1.5, True)
    assert spec.excluded == (dropped.file,) and spec.crops == {first.file: chosen_crop}
    samples = sorted(job.paths.training_samples("person").glob("qwv person_*.png"))
    assert len(samples) == used_before - 1
    assert spec.budget_minutes == 90 and spec.budget_money is None
    # the job ran its own copy of the pack as edited: the added style in, the one turned off out
    pack = load_pack(spec.generate.prompt_pack)
    assert Path(spec.generate.prompt_pack).is_relative_to(job.paths.meta)
    assert [(s.keyword, s.enabled) for s in pack] == [("oil", True), ("comic", False), ("pirate", True)]
    collages = {p.parent.name for p in job.paths.outputs.glob("qwv_*/qwv_*-0000.jpg")}
    assert collages == {"qwv_bare", "qwv_oil", "qwv_pirate"}
    assert len(list(job.paths.outputs.glob("qwv_pirate/samples/*.png"))) == spec.generate.images_per_prompt == 2

    # next time, welcome offers the finished job's results
    again = IonCannonApp(tui_workdir, demo=True, proc=tmp_path / "no-proc")
    async with again.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(again.screen, WelcomeScreen), what="welcome")
        assert job.name in shown(again.screen.query_one("#welcome-job", Static))
        await pilot.press("v")
        await wait_for(pilot, lambda: type(again.screen).__name__ == "FinishScreen", what="finish screen")
