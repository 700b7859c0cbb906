"""The job screens tell the truth at the edges: after a resume, before the first progress line, on a CPU box."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Static

from ioncannon.engine.hardware import HardwareInfo
from ioncannon.job.events import Progress, RunnerStarted, StageStarted
from ioncannon.job.paths import JobPaths
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.jobview import JobView
from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.screens.train import TrainScreen
from ioncannon.tui.session import SessionStore, WizardSession

from .conftest import shown, wait_for
from .test_snapshots import NO_GPU, NOW, box, held_lock, job_on_disk, make_app, saved_session  # noqa: F401

__all__ = ["box", "held_lock"]


def test_a_resumed_runner_shows_no_old_rate_and_replaced_steps_leave_the_loss_chart() -> None:
    view = JobView()
    view.apply([Progress(stage="train", done=d, total=100, rate=3.0, eta_s=30.0, loss=1.0 - d / 100)
                for d in (10, 20, 30, 40)])
    view.apply([RunnerStarted(pid=2, resumed=True)])  # killed after step 40; the checkpoint was at step 20
    assert view.progress["train"].rate == 0.0 and view.progress["train"].eta_s is None
    view.apply([Progress(stage="train", done=30, total=100, rate=2.0, eta_s=35.0, loss=0.5)])
    assert list(view.loss_steps) == [10, 20, 30] and list(view.losses) == [0.9, 0.8, 0.5]


def test_a_stage_the_plan_leaves_out_is_not_ticked() -> None:
    view = JobView()
    view.apply([StageStarted(stage="class_images")])
    view.stages_done = ["prepare", "class_images"]
    marks = dict(view.stage_marks(frozenset({"class_images"})))
    assert marks["class_images"] == "–" and marks["prepare"] == "✓"


async def test_each_wait_before_the_first_progress_says_what_it_waits_for(
        box: Path, held_lock: Callable[[JobPaths], None]) -> None:  # noqa: F811
    paths = job_on_disk(box, "class_images", [StageStarted(stage="class_images")], ["prepare"], 0, 0)
    held_lock(paths)
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen), what="training screen")
        await pilot.pause()
        stats = shown(app.screen.query_one(".progress-stats", Static))
        assert "draw the class images" in stats and "loading the model" not in stats


async def test_ctrl_f_on_a_cpu_box_is_not_offered(box: Path) -> None:  # noqa: F811
    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx")
    app = make_app(box, hardware=NO_GPU)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.hardware is not None,
                       what="probe")
        screen = app.screen
        assert isinstance(screen, HardwareScreen)
        model = screen.session.base_model
        await pilot.press("ctrl+f")
        await pilot.pause()
        assert screen.check_action("switch_family", ()) is False and screen.session.base_model == model
        shown_keys = {b.description for (_, b, _, _) in screen.active_bindings.values() if b.show}
        assert not shown_keys & {"Model", "Preset", "Full/LoRA"}  # no plan here to change


async def test_the_demo_flux_plan_says_what_a_real_run_needs(box: Path) -> None:  # noqa: F811
    SessionStore(box, WizardSession(demo=True)).update(step="hardware", photos_dir="photos", identifier="zwx",
                                                       family="flux")
    app = make_app(box, demo=True)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan", timeout=30)
        plan = " ".join(shown(app.screen.query_one("#hardware-plan", Static)).split())
        assert "a login token is on this machine" not in plan
        assert "a real run downloads FLUX.1-dev" in plan and "needs neither" in plan
        assert "rank-16" not in plan  # the demo's rank is its own


async def test_the_first_looks_count_their_seconds(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import threading

    import ioncannon.tui.tokenizer
    from ioncannon.tui.screens.subject import SubjectScreen
    from ioncannon.tui.tokenizer import TokenizerCheck

    released = threading.Event()

    def slow_tokenizer(key: str) -> TokenizerCheck:
        released.wait(30)
        return TokenizerCheck(None, "offline")

    monkeypatch.setattr(ioncannon.tui.tokenizer, "find_clip_tokenizer", slow_tokenizer)
    saved_session(box, step="subject", photos_dir="photos", identifier="zwx")
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SubjectScreen), what="subject")
        lint = app.screen.query_one("#subject-lint", Static)
        await wait_for(pilot, lambda: "loading it: " in shown(lint), what="the tokenizer wait counted", timeout=20)
        released.set()
        await wait_for(pilot, lambda: "offline" in shown(lint), what="the verdict")


async def test_the_hardware_probe_counts_its_seconds(box: Path) -> None:  # noqa: F811
    import threading

    released = threading.Event()

    def slow_probe(_: Path) -> HardwareInfo:
        released.wait(30)
        return NO_GPU

    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx")
    app = IonCannonApp(box, hardware_probe=slow_probe, clock=lambda: NOW, proc=Path("no-proc"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen), what="hardware")
        facts = app.screen.query_one("#hardware-facts", Static)
        await wait_for(pilot, lambda: "loading torch: " in shown(facts), what="the probe wait counted", timeout=20)
        released.set()
        await wait_for(pilot, lambda: app.screen.hardware is not None, what="the probe")
        await pilot.pause(1.5)
        assert "loading torch" not in shown(facts)
