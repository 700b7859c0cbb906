"""Every screen at 80×24, compared with its accepted snapshot (`pytest --snapshot-update` after a deliberate change).

Snapshots must not depend on the day or the box: the clock is fixed, the work dir is a relative path,
the cost meter reads an empty /proc, and the hardware probe reports a fixed card. The train and
generate screens watch a job written to disk event by event, whose lock this test holds the way a
live runner does, so they show a running job without the timing noise of a real one.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from textual.pilot import Pilot
from textual.widgets import DirectoryTree, Input, Static

from ioncannon.job.events import (
    CheckpointSaved,
    CollageReady,
    Event,
    Message,
    Progress,
    RunnerStarted,
    SampleReady,
    StageFinished,
    StageStarted,
)
from ioncannon.job.fsio import append_line, write_json
from ioncannon.job.lock import RunnerLock, try_lock
from ioncannon.job.paths import JobPaths
from ioncannon.job.plan.box import GpuInfo, HardwareInfo
from ioncannon.job.plan.demo import demo_photos_dir
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.job.state import JobState
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.screens.check import CheckScreen
from ioncannon.tui.screens.generate import GenerateScreen
from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.screens.train import TrainScreen
from ioncannon.tui.session import SessionStore, WizardSession
from tests.hanging_hub import LocalHub

from .conftest import shown, wait_for

NOW = 1_800_000_000.0
H100 = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA H100 80GB HBM3", 79.1, 78.6)], disk_free_gib=412.3,
                    cpu_count=16, ram_gib=125.7)
TWO_H100 = HardwareInfo(gpus=[GpuInfo(i, "NVIDIA H100 80GB HBM3", 79.1, 78.6) for i in range(2)],
                        disk_free_gib=412.3, cpu_count=32, ram_gib=251.0)
NO_GPU = HardwareInfo(gpus=[], disk_free_gib=41.0, cpu_count=2, ram_gib=23.5)


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A relative work dir and a copy of the demo photos, so no temp path shows on screen.

    The text cursor does not blink: a snapshot taken half a second later would otherwise differ.
    """
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "no-proc").mkdir()
    shutil.copytree(demo_photos_dir(), tmp_path / "photos")
    yield Path("work")


def make_app(workdir: Path, hardware: HardwareInfo = H100, demo: bool = False) -> IonCannonApp:
    return IonCannonApp(workdir, demo=demo, hardware_probe=lambda _: hardware, clock=lambda: NOW,
                        proc=Path("no-proc"))


def saved_session(workdir: Path, **answers: object) -> None:
    store = SessionStore(workdir, WizardSession())
    store.update(**answers)


def gradient(path: Path, size: int = 64, phase: float = 0.0) -> str:
    image = Image.new("RGB", (size, size))
    image.putdata([
        (int(127 + 120 * math.sin(x / 9 + phase)), int(127 + 120 * math.cos(y / 11)), (x * y) % 256)
        for y in range(size) for x in range(size)
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return str(path)


def job_on_disk(workdir: Path, stage: str, events: list[Event], stages_done: list[str], done: int,
                total: int) -> JobPaths:
    spec = JobSpec(name="zwx-20270115-0930", photos_dir="photos", identifier="zwx", class_name="person",
                   hourly_price=2.49)
    paths = JobPaths(workdir / spec.name)
    save_spec(paths, spec)
    for event in events:
        append_line(paths.events_file, event.dumps())
    state = JobState(status="running", stage=stage, stages_done=stages_done, done=done, total=total,
                     started_at=NOW - 754, updated_at=NOW - 2, elapsed_s=754, pid=4242)
    write_json(paths.state_file, state.to_json())
    return paths


@pytest.fixture
def held_lock() -> Iterator[Callable[[JobPaths], None]]:
    """Hold a job's runner lock as a live runner would (the kernel lock on the job folder the engine checks)."""
    locks: list[RunnerLock] = []

    def hold(paths: JobPaths) -> None:
        lock = try_lock(paths)
        assert lock is not None
        lock.record(4242)
        locks.append(lock)

    yield hold
    for lock in locks:
        lock.release()


def test_welcome(box: Path, snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(make_app(box))


def test_welcome_offers_to_resume_a_dead_job(box: Path, snap_compare: Callable[..., bool]) -> None:
    job_on_disk(box, "train", [], ["fetch", "prepare", "class_images", "cache"], 400, 800)
    assert snap_compare(make_app(box))


def test_photos(box: Path, snap_compare: Callable[..., bool]) -> None:
    saved_session(box, step="photos", photos_dir="photos")

    async def loaded(pilot: Pilot[None]) -> None:
        tree = pilot.app.screen.query_one(DirectoryTree)
        await wait_for(pilot, lambda: bool(tree.root.children), what="folder listing")

    assert snap_compare(make_app(box), run_before=loaded)


def test_photos_says_what_to_do_with_an_empty_folder(box: Path, snap_compare: Callable[..., bool]) -> None:
    Path("empty").mkdir()
    saved_session(box, step="photos", photos_dir="empty")

    async def loaded(pilot: Pilot[None]) -> None:
        tree = pilot.app.screen.query_one(DirectoryTree)
        await wait_for(pilot, lambda: bool(tree.root.children), what="folder listing")

    assert snap_compare(make_app(box), press=["ctrl+n"], run_before=loaded)


def test_check(box: Path, snap_compare: Callable[..., bool]) -> None:
    saved_session(box, step="check", photos_dir="photos", identifier="zwx", excluded=["IMG_0004.jpg"],
                  family="sd15")  # judged at 512 px

    async def scanned(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: "crop" in shown(app.screen.query_one(".preview-caption", Static)),
                       what="preview")

    assert snap_compare(make_app(box), run_before=scanned)


def test_subject_with_a_warning(box: Path, snap_compare: Callable[..., bool]) -> None:
    saved_session(box, step="subject", photos_dir="photos", identifier="sks", class_choice="dog")
    assert snap_compare(make_app(box))


def test_prompts(box: Path, snap_compare: Callable[..., bool]) -> None:
    saved_session(box, step="prompts", photos_dir="photos", identifier="zwx", run_length="medium")
    assert snap_compare(make_app(box), press=["down", "down", "space"])


def test_prompts_edit_dialog_says_what_the_pack_refuses(box: Path, snap_compare: Callable[..., bool]) -> None:
    saved_session(box, step="prompts", photos_dir="photos", identifier="zwx")
    assert snap_compare(make_app(box), press=["e", "ctrl+u", *"no token here", "enter"])


def test_hardware_plan_time_and_cost(box: Path, snap_compare: Callable[..., bool], answering_hub: LocalHub) -> None:
    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx", hourly_price=2.49, budget="20",
                  family="sd15")

    async def probed(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None
                       and app.screen.availability is not None, what="plan and the base model's download")

    assert snap_compare(make_app(box), run_before=probed)


def test_hardware_refuses_without_a_gpu(box: Path, snap_compare: Callable[..., bool]) -> None:
    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx")

    async def probed(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.hardware is not None,
                       what="probe")
        await pilot.press("ctrl+n")

    assert snap_compare(make_app(box, hardware=NO_GPU), run_before=probed)


def test_hardware_picks_sdxl_where_it_fits(box: Path, snap_compare: Callable[..., bool],
                                           answering_hub: LocalHub) -> None:
    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx", hourly_price=0.69)
    card = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA GeForce RTX 4090", 24.0, 23.2)], disk_free_gib=180.0,
                        cpu_count=16, ram_gib=62.0)

    async def probed(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        # the base model box follows the family (SD 1.5's default becomes SDXL's): let that change settle
        await wait_for(pilot, lambda: app.screen.session.base_model == "stabilityai/stable-diffusion-xl-base-1.0",
                       what="the SDXL base model")
        await wait_for(pilot, lambda: app.screen.availability is not None
                       and app.screen.availability_key == app.screen._model_key(), what="its download")
        await pilot.pause()

    assert snap_compare(make_app(box, hardware=card), run_before=probed)


def test_hardware_flux_says_the_licence_and_how_to_log_in(box: Path, snap_compare: Callable[..., bool],
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          answering_hub: LocalHub) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", "no-hf-login-here")
    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx", hourly_price=2.49, family="sdxl",
                  resolution=768)

    async def probed(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        await pilot.press("ctrl+f")  # SDXL 768 px -> Flux.1 1024 px
        await wait_for(pilot, lambda: app.screen.decided is not None and app.screen.decided.family == "flux"
                       and app.screen.estimate_s is not None, what="the Flux plan")
        await wait_for(pilot, lambda: app.screen.session.base_model == "black-forest-labs/FLUX.1-dev",
                       what="the FLUX.1-dev base model")
        await wait_for(pilot, lambda: app.screen.availability is not None
                       and app.screen.availability_key == app.screen._model_key(), what="its download")
        await pilot.pause()

    assert snap_compare(make_app(box), run_before=probed)


def test_hardware_offers_all_gpus(box: Path, snap_compare: Callable[..., bool], answering_hub: LocalHub) -> None:
    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx", hourly_price=2.49, family="sd15")

    async def probed(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None
                       and app.screen.availability is not None, what="plan and the base model's download")

    assert snap_compare(make_app(box, hardware=TWO_H100), run_before=probed)


def training_events(paths: JobPaths) -> list[Event]:
    events: list[Event] = [RunnerStarted(pid=4242, t=NOW - 754)]
    for stage in ("fetch", "prepare", "class_images", "cache"):
        events += [StageStarted(stage=stage, t=NOW - 700), StageFinished(stage=stage, seconds=30, t=NOW - 650)]
    events.append(StageStarted(stage="train", t=NOW - 600))
    for step in range(10, 430, 10):
        loss = 0.18 + 0.12 * math.exp(-step / 150) + 0.02 * math.sin(step / 7)
        events.append(Progress(stage="train", done=step, total=800, rate=2.9, eta_s=(800 - step) / 2.9, loss=loss,
                               t=NOW - 600 + step / 2.9))
    events.append(CheckpointSaved(step=400, path=str(paths.checkpoints / "step-000400"), t=NOW - 10))
    events.append(SampleReady(stage="train", path=gradient(paths.previews / "step-000400.png"),
                              label="a photo of zwx person", step=400, t=NOW - 9))
    return events


def pack_events(paths: JobPaths, keywords: tuple[str, ...], total: int = 196) -> tuple[list[Event], int]:
    """Generate-stage events part way through the pack: every keyword's images, a collage for all but the last
    (still drawing), and the progress line; with how many images are done."""
    events: list[Event] = []
    done = 0
    for n, keyword in enumerate(keywords):
        for i in range(16 if keyword != "bare" else 4):
            done += 1
            events.append(SampleReady(stage="generate", path=f"{paths.outputs}/zwx_{keyword}/samples/{i:04d}.png",
                                      label=keyword, t=NOW - 200 + done))
        if keyword != keywords[-1]:
            collage = gradient(paths.outputs / f"zwx_{keyword}" / f"zwx_{keyword}-0000.jpg", 96, phase=n)
            events.append(CollageReady(keyword=keyword, path=collage, t=NOW - 200 + done))
    events.append(Progress(stage="generate", done=done, total=total, rate=6.2, eta_s=(total - done) / 6.2,
                           label=keywords[-1], t=NOW - 1))
    return events, done


def test_train(box: Path, snap_compare: Callable[..., bool], held_lock: Callable[[JobPaths], None]) -> None:
    paths = JobPaths(box / "zwx-20270115-0930")
    paths = job_on_disk(box, "train", training_events(paths), ["fetch", "prepare", "class_images", "cache"], 420, 800)
    held_lock(paths)

    async def attached(pilot: Pilot[None]) -> None:
        app = pilot.app
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen) and len(app.job_view.losses) == 42,
                       what="events")

    assert snap_compare(make_app(box), run_before=attached)


def test_leave_or_stop_dialog(box: Path, snap_compare: Callable[..., bool],
                              held_lock: Callable[[JobPaths], None]) -> None:
    paths = JobPaths(box / "zwx-20270115-0930")
    paths = job_on_disk(box, "train", training_events(paths), ["fetch", "prepare", "class_images", "cache"], 420, 800)
    held_lock(paths)

    async def asked(pilot: Pilot[None]) -> None:
        app = pilot.app
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen) and len(app.job_view.losses) == 42,
                       what="events")
        await pilot.press("ctrl+q")

    assert snap_compare(make_app(box), run_before=asked)


def test_generate(box: Path, snap_compare: Callable[..., bool], held_lock: Callable[[JobPaths], None]) -> None:
    paths = JobPaths(box / "zwx-20270115-0930")
    events = training_events(paths) + [StageFinished(stage="train", t=NOW - 300)]
    events += [StageStarted(stage="export", t=NOW - 290), StageFinished(stage="export", t=NOW - 250),
               StageStarted(stage="generate", t=NOW - 240)]
    pack, done = pack_events(paths, ("bare", "portrait", "blackwhite", "oilpainting"))
    events += pack
    events.append(Message(level="info", text="exported trained_models/zwx_model.safetensors (2.0 GB)", t=NOW - 250))
    paths = job_on_disk(box, "generate", events, ["fetch", "prepare", "class_images", "cache", "train", "export"], done,
                        196)
    held_lock(paths)

    async def attached(pilot: Pilot[None]) -> None:
        app = pilot.app
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, GenerateScreen) and len(app.job_view.collages) == 3,
                       what="collages")
        await pilot.press("left")

    assert snap_compare(make_app(box), run_before=attached)


def test_check_at_100x30(box: Path, snap_compare: Callable[..., bool]) -> None:
    saved_session(box, step="check", photos_dir="photos", identifier="zwx", family="sd15")  # judged at 512 px

    async def scanned(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
        await pilot.press(*["down"] * 5)  # the photo that was turned upright: its reason in full below
        await wait_for(pilot, lambda: "crop" in shown(app.screen.query_one(".preview-caption", Static)),
                       what="preview")

    assert snap_compare(make_app(box), run_before=scanned, terminal_size=(100, 30))


def test_prompts_at_100x30(box: Path, snap_compare: Callable[..., bool]) -> None:
    saved_session(box, step="prompts", photos_dir="photos", identifier="zwx")
    assert snap_compare(make_app(box), terminal_size=(100, 30))
