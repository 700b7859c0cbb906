"""Every step at the smallest terminal we promise (80×24) and a roomy one (120×40), nothing the person needs cut.

Same fixed world as test_snapshots: a fixed clock, a relative work dir, an empty /proc and a fixed card;
the finish screen also gets a fixed environment (no provider, no SSH link), so its commands never vary.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DirectoryTree, Static

from ioncannon.job.events import RunnerStarted
from ioncannon.job.fsio import append_line, write_json
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.job.state import JobState
from ioncannon.tui.screens.base import WizardScreen
from ioncannon.tui.screens.check import CheckScreen
from ioncannon.tui.screens.generate import GenerateScreen
from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.screens.train import TrainScreen
from tests.hanging_hub import LocalHub

from .conftest import shown, wait_for
from .test_snapshots import (  # noqa: F401 - fixtures
    NOW,
    box,
    gradient,
    held_lock,
    job_on_disk,
    make_app,
    pack_events,
    saved_session,
    training_events,
)

SIZES = [(80, 24), (120, 40)]
Prepare = Callable[[Path, Callable[[JobPaths], None]], Callable[[Pilot[None]], Awaitable[None]]]


def finished_on_disk(workdir: Path) -> JobPaths:
    spec = JobSpec(name="zwx-20270114-1800", photos_dir="photos", identifier="zwx", class_name="person",
                   hourly_price=2.49)
    paths = JobPaths(workdir / spec.name)
    save_spec(paths, spec)
    append_line(paths.events_file, RunnerStarted(pid=1, t=NOW - 5531).dumps())
    write_json(paths.state_file, JobState(status="finished", started_at=NOW - 5531, updated_at=NOW - 700,
                                          elapsed_s=4804.0, stages_done=["prepare", "class_images", "cache",
                                          "train", "export", "generate", "package"]).to_json())
    for keyword in ("oil", "comic"):
        samples = paths.outputs / f"zwx_{keyword}" / "samples"
        for i in range(4):
            gradient(samples / f"{i:04d}.png", 32, phase=i)
        gradient(samples.parent / f"zwx_{keyword}-0000.jpg", 64)
    paths.trained_models.mkdir(parents=True, exist_ok=True)
    (paths.trained_models / "zwx_model.safetensors").write_bytes(b"\0" * 20_000)
    os.utime(paths.job_file, (NOW - 6000, NOW - 6000))
    return paths


def welcome(workdir: Path, hold: Callable[[JobPaths], None]) -> Callable[[Pilot[None]], Awaitable[None]]:
    finished_on_disk(workdir)
    failed = job_on_disk(workdir, "cache", [], ["prepare", "class_images"], 3, 12)
    state = JobState(status="failed", stage="cache", stages_done=["prepare", "class_images"], started_at=NOW - 900,
                     updated_at=NOW - 880, elapsed_s=20, message="could not download base model "
                     "stabilityai/stable-diffusion-xl-base-1.0: no network (fix the model source and resume)")
    write_json(failed.state_file, state.to_json())
    os.utime(failed.job_file, (NOW - 900, NOW - 900))  # the newest job

    async def go(pilot: Pilot[None]) -> None:
        await pilot.press("down")  # the failed job: what it offers, and that enter only opens it

    return go


def setup_step(step: str, **answers: object) -> Prepare:
    def prepare(workdir: Path, hold: Callable[[JobPaths], None]) -> Callable[[Pilot[None]], Awaitable[None]]:
        saved_session(workdir, step=step, photos_dir="photos", identifier="zwx", **answers)

        async def go(pilot: Pilot[None]) -> None:
            app = pilot.app
            await wait_for(pilot, lambda: isinstance(app.screen, WizardScreen) and app.screen.STEP.value == step,
                           what=step)
            if step == "photos":
                tree = app.screen.query_one(DirectoryTree)
                await wait_for(pilot, lambda: bool(tree.root.children), what="folder listing")
            if step == "check":
                await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
                await pilot.press(*["down"] * 5)  # the photo turned upright: the longest reason
                await wait_for(pilot, lambda: "crop" in shown(app.screen.query_one(".preview-caption", Static)),
                               what="preview")
            if step == "subject":  # the one verdict, once the tokenizer check has answered
                await wait_for(pilot, lambda: not getattr(app.screen, "checking", True), what="the verdict")
            if step == "hardware":  # the plan, and the base model's download from the hub below
                await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen)
                               and app.screen.estimate_s is not None and app.screen.availability is not None,
                               what="plan")
            await pilot.pause()

        return go

    return prepare


def train(workdir: Path, hold: Callable[[JobPaths], None]) -> Callable[[Pilot[None]], Awaitable[None]]:
    paths = JobPaths(workdir / "zwx-20270115-0930")
    hold(job_on_disk(workdir, "train", training_events(paths), ["fetch", "prepare", "class_images", "cache"], 420,
                        800))

    async def go(pilot: Pilot[None]) -> None:
        app = pilot.app
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen) and len(app.job_view.losses) == 42,
                       what="events")

    return go


def generate(workdir: Path, hold: Callable[[JobPaths], None]) -> Callable[[Pilot[None]], Awaitable[None]]:
    from ioncannon.job.events import StageFinished, StageStarted

    paths = JobPaths(workdir / "zwx-20270115-0930")
    events = training_events(paths) + [StageFinished(stage="train", t=NOW - 300), StageStarted(stage="export"),
                                       StageFinished(stage="export", t=NOW - 250), StageStarted(stage="generate")]
    pack, done = pack_events(paths, ("bare", "portrait", "oilpainting"))
    events += pack
    hold(job_on_disk(workdir, "generate", events, ["fetch", "prepare", "class_images", "cache", "train", "export"],
                        done, 196))

    async def go(pilot: Pilot[None]) -> None:
        app = pilot.app
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GenerateScreen) and len(app.job_view.collages) == 2,
                       what="collages")

    return go


def finish(workdir: Path, hold: Callable[[JobPaths], None]) -> Callable[[Pilot[None]], Awaitable[None]]:
    finished_on_disk(workdir)

    async def go(pilot: Pilot[None]) -> None:
        app = pilot.app
        await pilot.press("down", "v")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FinishScreen", what="finish")
        await pilot.pause()

    return go


STEPS: dict[str, Prepare] = {
    "welcome": welcome,
    "photos": setup_step("photos"),
    "check": setup_step("check", family="sd15"),  # judged at SD 1.5's 512 px
    "subject": setup_step("subject", class_choice="dog"),
    "prompts": setup_step("prompts", run_length="medium"),
    "hardware": setup_step("hardware", hourly_price=2.49, budget="20", family="sd15"),
    "train": train,
    "generate": generate,
    "finish": finish,
}


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider, no SSH link, one user name: the finish screen's download lines read the same anywhere."""
    for name in list(os.environ):
        if name.startswith(("VAST", "RUNPOD", "CONTAINER", "SSH_", "PUBLIC_IP")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("USER", "root")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("step", list(STEPS))
def test_every_step(box: Path, snap_compare: Callable[..., bool], held_lock: Callable[[JobPaths], None],  # noqa: F811
                    plain_env: None, step: str, size: tuple[int, int], request: pytest.FixtureRequest) -> None:
    if step == "hardware":  # the door asks the hub about the base model (the subject's check stays offline)
        request.getfixturevalue("answering_hub")
    go = STEPS[step](box, held_lock)
    assert snap_compare(make_app(box), run_before=go, terminal_size=size)


def test_help_at_80x24(box: Path, snap_compare: Callable[..., bool], answering_hub: LocalHub) -> None:  # noqa: F811
    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx", hourly_price=2.49, family="sd15")

    async def go(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None
                       and app.screen.availability is not None, what="plan")
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(make_app(box), run_before=go)

