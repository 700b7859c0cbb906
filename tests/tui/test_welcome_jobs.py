"""The welcome card lists every job, newest first: a failed one never runs again on enter, and can be set aside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import OptionList, Static

from ioncannon.job import handle
from ioncannon.job.families import family_info
from ioncannon.job.fsio import write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.demo import demo_photos_dir
from ioncannon.job.spec import JobSpec
from ioncannon.job.state import JobState
from ioncannon.job.workdir import list_jobs
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs.choice import ChoiceDialog
from ioncannon.tui.screens.finish import FinishScreen
from ioncannon.tui.screens.subject import SubjectScreen
from ioncannon.tui.screens.train import TrainScreen
from ioncannon.tui.screens.welcome import WelcomeScreen
from ioncannon.tui.session import SessionStore, WizardSession

from .conftest import shown, wait_for

NOW = 1_800_000_000.0


def job(workdir: Path, name: str, status: str, age_s: float, *, demo: bool = False, family: str = "sd15",
        message: str = "") -> JobPaths:
    """A job on disk in `status`, its job.json dated `age_s` ago (the list is ordered by it)."""
    spec = JobSpec(name=name, photos_dir=str(demo_photos_dir()), identifier="zwx", class_name="dog", device="cpu",
                   demo=demo, family=family, resolution=1024 if family == "sdxl" else 512,
                   base_model=family_info(family).default_model)
    paths = handle.create(workdir, spec)
    stages = ["prepare", "class_images", "cache", "train", "export", "generate", "package"]
    state = JobState(status=status, stage=None if status == "finished" else "cache",
                     stages_done=stages if status == "finished" else ["prepare", "class_images"],
                     message=message, started_at=NOW - 600, updated_at=NOW - 60, elapsed_s=540)
    write_json(paths.state_file, state.to_json())
    os.utime(paths.job_file, (NOW - age_s, NOW - age_s))
    return paths


def panel(app: IonCannonApp) -> str:
    return " ".join(shown(app.screen.query_one("#welcome-job", Static)).split())


def rows(app: IonCannonApp) -> list[str]:
    jobs = app.screen.query_one("#welcome-jobs", OptionList)
    return [str(jobs.get_option_at_index(i).prompt) for i in range(jobs.option_count)]


def make_app(workdir: Path, tmp_path: Path, demo: bool = False) -> IonCannonApp:
    return IonCannonApp(workdir, demo=demo, clock=lambda: NOW, proc=tmp_path / "no-proc")


async def test_a_failed_job_is_listed_but_enter_only_opens_it(tui_workdir: Path, tmp_path: Path) -> None:
    for n in range(3):
        job(tui_workdir, f"done-{n}", "finished", 3000 + n)
    failed = job(tui_workdir, "doomed", "failed", 10, family="sdxl",
                 message="could not download base model stabilityai/stable-diffusion-xl-base-1.0")
    app = make_app(tui_workdir, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        listed = rows(app)
        assert [r.split()[0] for r in listed[1:]] == ["doomed", "done-0", "done-1", "done-2"]  # newest first
        assert "failed" in listed[1] and all("finished" in r for r in listed[2:])
        welcome = app.screen
        assert isinstance(welcome, WelcomeScreen) and welcome.action == "new"  # the default is never the failure
        await pilot.press("down")
        assert welcome.action == "open" and "could not download base model" in panel(app)
        assert welcome.check_action("resume", ()) is True  # resuming it anyway is its own key
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen), what="the failed job's screen")
        assert handle.is_alive(failed) is False  # nothing ran
        assert "could not download base model" in shown(app.screen.query_one("#job-status", Static))


async def test_a_finished_job_opens_although_newer_jobs_failed(tui_workdir: Path, tmp_path: Path) -> None:
    job(tui_workdir, "done", "finished", 3000)
    job(tui_workdir, "doomed", "failed", 10)
    app = make_app(tui_workdir, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        await pilot.press("down", "down")
        assert app.screen.check_action("view", ()) is True and "open its results" in panel(app)
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, FinishScreen), what="the finished job")


async def test_archive_and_delete_ask_first(tui_workdir: Path, tmp_path: Path) -> None:
    photos = demo_photos_dir()
    before = sorted(p.name for p in photos.iterdir())
    job(tui_workdir, "keep", "finished", 3000)
    job(tui_workdir, "shelve", "failed", 20)
    gone = job(tui_workdir, "gone", "failed", 10)
    app = make_app(tui_workdir, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        await pilot.press("down", "d")
        assert isinstance(app.screen, ChoiceDialog) and "gone" in app.screen.title_text
        await pilot.press("enter")  # not the delete key: nothing happens
        await pilot.press("escape")
        await pilot.pause()
        assert gone.root.is_dir() and isinstance(app.screen, WelcomeScreen)
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: not gone.root.exists(), what="the deleted job")
        assert [r.split()[0] for r in rows(app)[1:]] == ["shelve", "keep"]
        await pilot.press("down", "s")
        assert isinstance(app.screen, ChoiceDialog) and "nothing is deleted" in app.screen.body_text
        await pilot.press("enter")
        await wait_for(pilot, lambda: (tui_workdir / "archive" / "shelve" / ".ioncannon").is_dir(), what="archive")
        assert [r.split()[0] for r in rows(app)[1:]] == ["keep"]
    assert sorted(p.name for p in photos.iterdir()) == before  # the photo folder is never touched
    assert [j.name for j in list_jobs(tui_workdir)] == ["keep"]  # `ioncannon status` no longer sees either


async def test_the_demo_offers_only_its_own_jobs_and_labels_each(tui_workdir: Path, tmp_path: Path) -> None:
    job(tui_workdir, "real-sdxl", "running", 10, family="sdxl")  # interrupted: no runner holds its lock
    job(tui_workdir, "demo-one", "stopped", 100, demo=True)
    app = make_app(tui_workdir, tmp_path, demo=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        listed = rows(app)
        assert "demo" not in listed[1] and "SDXL" in listed[1] and "demo SD 1.5" in listed[2]
        welcome = app.screen
        assert isinstance(welcome, WelcomeScreen) and welcome.selected is not None
        assert welcome.selected.name == "demo-one"  # the real job is listed, never offered under the demo
        await pilot.press("up")
        assert panel(app).startswith("Job real-sdxl")


@pytest.mark.parametrize("demo", [False, True])
async def test_the_title_says_demo_only_for_a_demo_job(tui_workdir: Path, tmp_path: Path, demo: bool) -> None:
    job(tui_workdir, "one", "failed", 10, demo=demo)
    app = make_app(tui_workdir, tmp_path, demo=not demo)  # opened from the other door
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        await pilot.press("down", "v")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen), what="the job")
        title = shown(app.screen.query_one(".titlebar", Static))
        assert ("demo" in title) is demo


async def test_quitting_mid_setup_still_hears_of_a_failed_job(tui_workdir: Path, tmp_path: Path) -> None:
    job(tui_workdir, "doomed", "failed", 10)
    SessionStore(tui_workdir, WizardSession()).update(step="subject", photos_dir=str(tmp_path), identifier="zwx")
    app = make_app(tui_workdir, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        assert "carry on setting up: Subject" in rows(app)[0] and "doomed" in rows(app)[1]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SubjectScreen), what="the saved step")


async def test_a_wiped_job_says_so_and_can_be_set_aside(tui_workdir: Path, tmp_path: Path) -> None:
    from ioncannon.rental.bundle import update_finish_record

    done = job(tui_workdir, "done", "finished", 100)
    update_finish_record(done, wipe={"at": NOW - 10, "removed": []})
    app = make_app(tui_workdir, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        assert rows(app)[1].rstrip().endswith("wiped")
        await pilot.press("down", "s", "enter")
        await wait_for(pilot, lambda: len(rows(app)) == 1, what="the wiped job set aside")
