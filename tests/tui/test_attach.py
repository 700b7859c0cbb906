"""A job started elsewhere: the wizard finds it, attaches, shows it advance; stop and resume from the keyboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.widgets import Static

from ioncannon.engine.demo import demo_spec
from ioncannon.job import handle
from ioncannon.job.lock import runner_pid
from ioncannon.job.workdir import create_job
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs.choice import ChoiceDialog
from ioncannon.tui.screens.train import TrainScreen
from ioncannon.tui.screens.welcome import WelcomeScreen
from ioncannon.tui.widgets.progress import ProgressPanel

from .conftest import shown, wait_for


def panel_text(app: IonCannonApp) -> str:
    panel = app.screen.query_one(ProgressPanel)
    return " ".join(shown(s) for s in panel.query(Static))


async def test_attach_watch_stop_and_resume(tui_workdir: Path, small_demo: Callable[..., None], tmp_path: Path) -> None:
    small_demo(60)  # long enough to catch it mid-training
    spec = demo_spec(tui_workdir)
    paths = create_job(tui_workdir, spec)
    handle.start(paths, tui_workdir)

    app = IonCannonApp(tui_workdir, demo=True, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        welcome = app.screen
        assert isinstance(welcome, WelcomeScreen) and welcome.action == "attach"
        assert spec.name in shown(app.screen.query_one("#welcome-job", Static))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen), what="train screen")

        # the progress the screen shows moves on by itself
        await wait_for(pilot, lambda: app.job_view.progress.get("train") is not None, timeout=90, what="training")
        first_step = app.job_view.progress["train"].done
        first_text = panel_text(app)
        await wait_for(pilot, lambda: app.job_view.progress["train"].done >= first_step + 3, timeout=60,
                       what="more steps")
        assert panel_text(app) != first_text and f"/{spec.train.steps} steps" in panel_text(app)
        assert len(app.job_view.losses) >= 2  # the sparkline has a line to draw

        # ctrl+q asks; s stops the job at a checkpoint (it does not just vanish)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="leave dialog")
        await pilot.press("s")
        await wait_for(pilot, lambda: app.job_view.state.status == "stopped" and not app.job_view.alive,
                       timeout=60, what="stopped")
        assert "Stopped" in shown(app.screen.query_one("#job-status", Static))
        checkpoint = app.job_view.last_checkpoint
        assert checkpoint is not None and checkpoint > 0  # stopping saved one
        assert runner_pid(paths) is None

        # r resumes: a new runner picks up where the last checkpoint left off
        await pilot.press("r")
        await wait_for(pilot, lambda: app.job_view.alive and app.job_view.state.status == "running", timeout=30,
                       what="resumed runner")
        await wait_for(pilot, lambda: ("info", "runner resumed the job") in app.job_view.messages, timeout=30,
                       what="resume event")
        # state.json may still hold the stopped run's last throttled count (below the checkpoint written on stop):
        # the new runner's own first progress line says where it continued
        replaced = app.job_view.progress.get("train")  # a resumed runner's view drops the old rate, so a new object
        await wait_for(pilot, lambda: app.job_view.progress.get("train") is not replaced, timeout=90,
                       what="training again")
        assert app.job_view.progress["train"].done >= checkpoint  # continued from the checkpoint, not from step 0

        # ctrl+q then l leaves the screen; the job keeps running without it
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="leave dialog")
        await pilot.press("l")
    assert runner_pid(paths) is not None


async def test_news_arriving_before_a_new_job_screen_is_mounted_waits_for_its_mount(tui_workdir: Path,
                                                                                      tmp_path: Path) -> None:
    """Attaching (or resuming) swaps the job screen for a new one on the next refresh, while the pump keeps
    posting: news for a screen that is not mounted yet is drawn by its own mount, not into missing widgets."""
    from ioncannon.tui.app import JobChanged

    spec = demo_spec(tui_workdir)
    paths = create_job(tui_workdir, spec)
    app = IonCannonApp(tui_workdir, demo=True, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        app.attach(paths, spec)
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen) and app.screen.is_mounted,
                       what="train screen")
        fresh = TrainScreen()
        app.push_screen(fresh)   # on the stack, not mounted until the next refresh
        assert app.step_screen() is fresh and not fresh.is_mounted
        app.feed.offer([], handle.read_state(paths), False)
        app.on_job_changed(JobChanged())   # the pump's message, landing in that gap
        await wait_for(pilot, lambda: fresh.is_mounted, what="the new screen's mount")
        await pilot.pause()
        assert app.return_value is None and app.is_running, "the app did not crash"
        assert shown(fresh.query_one("#job-status", Static)).strip(), "its mount drew the job's status"
