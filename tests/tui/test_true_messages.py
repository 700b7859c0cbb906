"""Each screen says one true thing: the resume card after a kill, the stopped training screen, the bundle counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Static

from ioncannon.job.events import CheckpointSaved, Event, Progress, RunnerStarted, StageStarted, Stopped
from ioncannon.job.fsio import write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.state import JobState, last_checkpoint_step
from ioncannon.tui.screens.train import TrainScreen
from ioncannon.tui.screens.welcome import WelcomeScreen

from .conftest import shown, wait_for
from .test_snapshots import NOW, box, held_lock, job_on_disk, make_app  # noqa: F401 - fixtures


def publish_checkpoint(paths: JobPaths, step: int) -> None:
    folder = paths.checkpoints / f"step_{step:08d}"
    folder.mkdir(parents=True)
    write_json(folder / "manifest.json", {"format": 1, "step": step, "files": {}})


@pytest.mark.parametrize(("checkpoint", "promise"), [
    (None, "training starts again from step 0 (no checkpoint was saved yet)"),
    (300, "training continues from its step-300 checkpoint"),
])
async def test_resume_card_after_a_kill_says_one_true_thing(box: Path, checkpoint: int | None,  # noqa: F811
                                                            promise: str) -> None:
    paths = job_on_disk(box, "train", [], ["prepare", "class_images", "cache"], 7 if checkpoint is None else 364, 400)
    if checkpoint is not None:
        publish_checkpoint(paths, checkpoint)
    (paths.checkpoints / ".staging-step_00000350-99").mkdir(parents=True)  # a half-written save is no checkpoint
    app = make_app(box)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        card = " ".join(shown(app.screen.query_one("#welcome-job", Static)).split())
        assert "interrupted" in card and "status: running" not in card and "is not running" not in card
        assert "stopped without finishing" in card
        assert promise in card
        assert "last checkpoint" not in card


def stopped_training(paths: JobPaths) -> list[Event]:
    return [
        RunnerStarted(pid=4242, t=NOW - 100), StageStarted(stage="train", t=NOW - 90),
        Progress(stage="train", done=169, total=400, rate=26.6, eta_s=9.0, loss=0.12, t=NOW - 5),
        CheckpointSaved(step=172, path=str(paths.checkpoints / "step_00000172"), t=NOW - 3),
        Stopped(reason="asked to stop", t=NOW - 2),
    ]


async def test_a_stopped_training_screen_shows_no_rate_and_one_step_count(box: Path) -> None:  # noqa: F811
    paths = JobPaths(box / "zwx-20270115-0930")
    paths = job_on_disk(box, "train", stopped_training(paths), ["prepare", "class_images", "cache"], 169, 400)
    write_json(paths.state_file, JobState(status="stopped", stage="train", stages_done=["prepare", "class_images",
               "cache"], done=169, total=400, started_at=NOW - 100, updated_at=NOW - 2, elapsed_s=98).to_json())
    publish_checkpoint(paths, 172)
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        assert "step-172 checkpoint" in shown(app.screen.query_one("#welcome-job", Static))
        app.attach(paths, app.screen.unfinished.spec)  # type: ignore[union-attr]
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen) and app.job_view.last_checkpoint == 172,
                       what="the stopped job")
        await pilot.pause()
        panel = " ".join(shown(w) for w in app.screen.query("#job-progress Static").results(Static))
        assert "last checkpoint: step 172" in panel and "172/400 steps" in panel and "169/400" not in panel
        assert "it/s" not in panel and "ETA" not in panel and "loss 0.1200" in panel
        status = shown(app.screen.query_one("#job-status", Static))
        assert "Stopped" in status and "step-172 checkpoint" in status


def test_last_checkpoint_counts_only_published_ones(tmp_path: Path) -> None:
    paths = JobPaths(tmp_path / "job")
    assert last_checkpoint_step(paths) is None
    (paths.checkpoints / "step_00000400").mkdir(parents=True)  # no manifest: not published
    publish_checkpoint(paths, 200)
    assert last_checkpoint_step(paths) == 200


async def test_bundle_dialog_counts_in_agreeing_plurals_and_names_the_model_it_holds(tmp_path: Path) -> None:
    from ioncannon.tui.dialogs.finish import BundleDialog
    from ioncannon.tui.screens.finish import FinishScreen

    from .test_finish_screen import FinishApp, finished_job

    paths, spec = finished_job(tmp_path)  # a full fine-tune: one single-file model, no LoRA
    app = FinishApp(FinishScreen(paths, spec, env={}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BundleDialog) and app.screen.plan is not None,
                       what="the bundle plan")
        summary = " ".join(shown(app.screen.query_one("#bundle-summary", Static)).split())
        assert "2 collages, 8 images, 1 contact sheet, 1 model file" in summary and "model files" not in summary
        (paths.trained_models / "model_card.md").write_text("# zwx")  # the card is named as what it is
        await pilot.press("i", "i")  # re-plan
        await wait_for(pilot, lambda: "model card" in shown(app.screen.query_one("#bundle-summary", Static)),
                       what="the re-plan")
        assert "1 model file, 1 model card" in " ".join(shown(app.screen.query_one("#bundle-summary", Static)).split())
        assert "model: single .safetensors file" in summary and "lora" not in summary.lower()


async def test_leaving_a_running_job_says_it_runs_on_and_how_to_come_back(
        box: Path, held_lock: Callable[[JobPaths], None]) -> None:  # noqa: F811
    from ioncannon.tui.dialogs.choice import ChoiceDialog

    paths = job_on_disk(box, "train", [RunnerStarted(pid=4242, t=NOW - 100)], ["prepare"], 10, 400)
    held_lock(paths)
    app = make_app(box)
    app.come_back = "ioncannon --workdir work"
    said: list[object] = []
    exit_app = app.exit

    def exit_saying(*args: object, **kwargs: object) -> None:
        said.append(kwargs.get("message"))  # printed once the terminal is back to the shell
        exit_app(*args, **kwargs)  # type: ignore[arg-type]

    app.exit = exit_saying  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")  # attach
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen), what="train screen")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="leave or stop")
        assert "ioncannon --workdir work" in app.screen.body_text  # type: ignore[attr-defined]
        depth = len(app.screen_stack)
        await pilot.press("ctrl+q")  # a second ctrl+q while asked opens no second question
        assert len(app.screen_stack) == depth and app.is_running
        await pilot.press("l")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    parting = " ".join(str(r) for r in said)
    assert f"Job {paths.root.name} keeps running" in parting and "`ioncannon --workdir work`" in parting
