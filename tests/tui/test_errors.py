"""Problems reach the person as sentences with a next step, never as a traceback or a dead app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.widgets import Static

from ioncannon.engine.demo import demo_spec
from ioncannon.job import handle
from ioncannon.job.lock import runner_pid
from ioncannon.job.plan.box import HardwareInfo
from ioncannon.job.workdir import create_job
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs.choice import ErrorDialog
from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.screens.train import TrainScreen
from ioncannon.tui.screens.welcome import WelcomeScreen
from ioncannon.tui.session import SessionStore, WizardSession

from .conftest import shown, wait_for


async def test_a_failed_job_says_what_and_offers_resume(tui_workdir: Path, small_demo: Callable[..., None],
                                                       tmp_path: Path) -> None:
    spec = demo_spec(tui_workdir).replace(base_model=str(tmp_path / "no-such-model"))
    paths = create_job(tui_workdir, spec)
    handle.start(paths, tui_workdir)
    app = IonCannonApp(tui_workdir, demo=True, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        await pilot.press("enter")  # attach, or resume if it already died
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen) and app.job_view.failed is not None,
                       timeout=90, what="the failure")
        status = shown(app.screen.query_one("#job-status", Static))
        assert "no-such-model" in status and "Press r to resume" in status
        assert "Traceback" not in status
        await wait_for(pilot, lambda: runner_pid(paths) is None, what="runner exit")
        await pilot.pause(0.5)
        assert app.screen.check_action("resume", ()) is True  # r is offered in the footer


async def test_a_crashing_background_task_opens_a_dialog_and_the_app_lives_on(tui_workdir: Path,
                                                                              tmp_path: Path) -> None:
    def broken_probe(_: Path) -> HardwareInfo:
        raise RuntimeError("the GPU driver fell over")

    SessionStore(tui_workdir, WizardSession()).update(step="hardware", photos_dir=str(tmp_path), identifier="zwx")
    app = IonCannonApp(tui_workdir, hardware_probe=broken_probe, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), what="error dialog")
        dialog = app.screen
        assert isinstance(dialog, ErrorDialog) and "the GPU driver fell over" in dialog.message
        assert "Traceback" not in dialog.message
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen), what="back on the screen")
    assert "RuntimeError: the GPU driver fell over" in (tui_workdir / "ioncannon-tui.log").read_text()


async def test_quit_while_setting_up_needs_no_confirmation(tui_workdir: Path, tmp_path: Path) -> None:
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        await pilot.press("ctrl+q")
        await pilot.pause(0.2)
        assert app.return_code == 0 and not app.is_running


async def test_a_question_ignores_other_keys(tui_workdir: Path, tmp_path: Path) -> None:
    from ioncannon.tui.dialogs.choice import Choice, ChoiceDialog

    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    answers: list[str | None] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        app.push_screen(ChoiceDialog("Sure?", "", [Choice("y", "yes", "yes"), Choice("escape", "no", "no")]),
                        answers.append)
        await pilot.pause()
        await pilot.press("q", "n", "enter")
        assert isinstance(app.screen, ChoiceDialog) and len(app.screen_stack) == 3 and app.is_running
        await pilot.press("y")
        assert answers == ["yes"] and isinstance(app.screen, WelcomeScreen)
