"""FinishScreen alone in a small App at 80×24, over a finished job folder built on disk."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from PIL import Image
from textual.app import App
from textual.widgets import Input

from ioncannon.job.events import RunnerStarted
from ioncannon.job.fsio import append_line
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, save_spec
from ioncannon.job.state import JobState, write_state
from ioncannon.rental.bundle import archive_path, human_bytes, plan_bundle
from ioncannon.rental.costs import PRICES_FILE
from ioncannon.tui.screens.finish import FinishScreen
from ioncannon.tui.widgets.meter import CostMeter


def finished_job(root: Path, hourly_price: float | None = 0.89) -> tuple[JobPaths, JobSpec]:
    paths = JobPaths(root / "alice-20250101-1200")
    spec = JobSpec(name=paths.root.name, photos_dir=str(root / "photos"), identifier="zwx", class_name="woman",
                   hourly_price=hourly_price)
    save_spec(paths, spec)
    started = time.time() - 5531
    append_line(paths.events_file, RunnerStarted(pid=1, t=started).dumps())
    write_state(paths, JobState(status="finished", started_at=started, elapsed_s=4804.0))
    for folder, n in ((paths.training_samples("woman"), 3), (paths.class_images("woman"), 2), (paths.previews, 2)):
        folder.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (64, 64), (i * 50, 90, 0)).save(folder / f"zwx woman_{i:03d}.png")
    (paths.checkpoints / "step-000200").mkdir(parents=True)
    (paths.checkpoints / "step-000200" / "unet.safetensors").write_bytes(os.urandom(3000))
    for keyword in ("oil", "comic"):
        samples = paths.outputs / f"zwx_{keyword}" / "samples"
        samples.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (64, 64), (0, i * 60, 200)).save(samples / f"{i:04d}.png")
        Image.new("RGB", (128, 128)).save(samples.parent / f"zwx_{keyword}-0000.jpg")
    Image.new("RGB", (256, 128)).save(paths.outputs / "contact_sheet.jpg")
    paths.trained_models.mkdir()
    (paths.trained_models / "zwx_model.safetensors").write_bytes(os.urandom(20_000))
    return paths, spec


def fake_vastai(folder: Path) -> Path:
    """A `vastai` that records its arguments instead of destroying anything."""
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "vastai.args"
    script = folder / "vastai"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\necho "destroying instance $3."\n')
    script.chmod(0o755)
    return record


class FinishApp(App[None]):
    def __init__(self, screen: FinishScreen) -> None:
        super().__init__()
        self.finish = screen

    def on_mount(self) -> None:
        self.push_screen(self.finish)


@pytest.fixture
def vast_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, str], Path]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    record = fake_vastai(tmp_path / "bin")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "home"),
        "CONTAINER_ID": "4242", "CONTAINER_API_KEY": "key-canary-1", "PUBLIC_IPADDR": "203.0.113.7",
        "VAST_TCP_PORT_22": "41022", "USER": "root",
    }
    return env, record


def screen_text(app: App[None]) -> str:
    return app.export_screenshot()


async def test_finish_screen_shows_files_money_commands_and_last_words(
    tmp_path: Path, vast_env: tuple[dict[str, str], Path],
) -> None:
    env, _ = vast_env
    paths, spec = finished_job(tmp_path)
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        # Kept for a human to look at (set IONCANNON_SCREENSHOTS to keep it past the run).
        shots = Path(os.environ.get("IONCANNON_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        app.save_screenshot("finish_80x24.svg", path=str(shots))
        assert (shots / "finish_80x24.svg").stat().st_size > 10_000
        svg = screen_text(app)
        # The last words stay on screen without scrolling, and the destroy key is offered.
        for words in ("DESTROY", "still bills", "cloud.vast.ai", "Destroy box"):
            assert words in svg.replace("&#160;", " "), words
        body = app.screen.query_one("#finish-download").render()
        assert "scp -r -P 41022 root@203.0.113.7:" in str(body)
        assert "rsync -rP -e 'ssh -p 41022'" in str(body)
        assert (paths.root / "DOWNLOAD.txt").read_text().count("41022") == 2
        money = str(app.screen.query_one("#finish-money").render())
        shown = re.search(r"(\d\d):(\d\d):(\d\d) since it started", money)
        assert shown is not None, money
        hours, minutes, seconds = (int(g) for g in shown.groups())
        # 5531 s since the runner started, plus however long a busy machine took to draw the screen
        assert 5531 <= hours * 3600 + minutes * 60 + seconds <= 5531 + 60
        assert "$1.37 this job" in money  # 5531 s at $0.89/h
        files = str(app.screen.query_one("#finish-files").render())
        assert "8 images in 2 folders, 2 collages" in files and "not written yet" in files


async def test_bundle_key_shows_size_first_then_writes_it(
    tmp_path: Path, vast_env: tuple[dict[str, str], Path]
) -> None:
    env, _ = vast_env
    paths, spec = finished_job(tmp_path)
    expected = plan_bundle(paths, spec).archive_bytes
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("b")
        await app.workers.wait_for_complete()  # the size is worked out off the UI thread
        await pilot.pause()
        summary = str(app.screen.query_one("#bundle-summary").render())
        assert human_bytes(expected) in summary
        assert not archive_path(paths, spec).exists()  # nothing written before enter
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert archive_path(paths, spec).stat().st_size == expected
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FinishScreen)
        assert "not written yet" not in str(app.screen.query_one("#finish-files").render())
        # DOWNLOAD.txt now points at the one file.
        assert archive_path(paths, spec).name in (paths.root / "DOWNLOAD.txt").read_text()


async def test_wipe_needs_the_job_name_typed(tmp_path: Path, vast_env: tuple[dict[str, str], Path]) -> None:
    env, _ = vast_env
    paths, spec = finished_job(tmp_path)
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("w")
        await pilot.pause()
        await pilot.press(*"alice", "enter")
        await pilot.pause()
        assert (paths.root / "training_samples").exists()  # a wrong name removes nothing
        field = app.screen.query_one("#wipe-confirm")
        field.value = ""
        await pilot.press(*spec.name, "enter")
        await pilot.pause()
        assert not (paths.root / "training_samples").exists()
        assert not paths.checkpoints.exists() and not paths.previews.exists()
        assert (paths.class_images("woman") / "zwx woman_000.png").exists()
        assert "not a secure erase" in str(app.screen.query_one("#wipe-plan").render())
        await pilot.press("escape")
        await pilot.pause()
        assert "Wiped" in str(app.screen.query_one("#finish-subject").render())


async def test_destroy_asks_about_the_download_then_runs_the_shown_command(
    tmp_path: Path, vast_env: tuple[dict[str, str], Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    env, record = vast_env
    monkeypatch.setenv("PATH", env["PATH"])  # the provider command runs with this process's PATH
    paths, spec = finished_job(tmp_path)
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("d")
        await pilot.pause()
        assert app.screen.query_one("#destroy-confirm").display is False  # the download question comes first
        await pilot.press("y")
        await pilot.pause()
        shown = str(app.screen.query_one("#destroy-body").render())
        assert 'vastai destroy instance 4242 --api-key "$CONTAINER_API_KEY"' in shown
        assert "key-canary-1" not in shown
        await pilot.press(*"destory", "enter")  # a typo runs nothing
        await pilot.pause()
        assert not record.exists()
        app.screen.query_one("#destroy-confirm").value = ""
        await pilot.press(*"destroy", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert record.read_text().split() == ["destroy", "instance", "4242", "--api-key", "key-canary-1"]
        assert "asked to destroy" in str(app.screen.query_one("#destroy-body").render())


async def test_without_a_provider_cli_there_is_no_destroy_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    paths, spec = finished_job(tmp_path, hourly_price=None)
    env = {
        "PATH": str(tmp_path / "empty-bin"),
        "HOME": str(tmp_path),
        "SSH_CONNECTION": "93.184.216.34 50000 10.0.0.5 22",
    }
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        svg = screen_text(app)
        assert "Destroy box" not in svg
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, FinishScreen)
        assert "HOST" in str(app.screen.query_one("#finish-download").render())
        assert "press p" in str(app.screen.query_one("#finish-money").render())
        await pilot.press("p")
        await pilot.press(*"$1.20", "enter")
        await pilot.pause()
        assert "$1.20/h" in str(app.screen.query_one("#finish-money").render())
        assert app.screen.query_one(CostMeter).hourly_price == 1.2
        assert (tmp_path / "config" / "ioncannon" / PRICES_FILE).is_file()
        await pilot.press("p")  # the dialog holds the price set, to edit, not an example
        await pilot.pause()
        assert app.screen.query_one("#price-input", Input).value == "1.2"
        await pilot.press("escape")


async def test_cost_meter_line_follows_the_clock(tmp_path: Path) -> None:
    now = [1_000_000.0]
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "uptime").write_text("3672.00 100.00\n")
    (proc / "1" / "stat").write_text("1 (init) S " + " ".join(["0"] * 18) + f" {72 * os.sysconf('SC_CLK_TCK')} 0\n")

    class MeterApp(App[None]):
        def compose(self):  # type: ignore[no-untyped-def]
            yield CostMeter(0.9, now[0] - 751, clock=lambda: now[0], proc=proc)

    app = MeterApp()
    async with app.run_test(size=(80, 3)) as pilot:
        meter = app.query_one(CostMeter)
        assert str(meter.render()) == "⏱ 00:12:31 · $0.19 this job · $0.90 since boot"
        now[0] += 3600
        meter.tick()
        await pilot.pause()
        assert str(meter.render()) == "⏱ 01:12:31 · $1.09 this job · $0.90 since boot"


async def test_a_budget_stop_explains_how_to_go_on_or_wrap_up(
    tmp_path: Path, vast_env: tuple[dict[str, str], Path]
) -> None:
    env, _ = vast_env
    paths, spec = finished_job(tmp_path)
    stopped = JobState(
        status="stopped", started_at=time.time() - 600, message="budget reached: 10 min of the 10 min cap"
    )
    write_state(paths, stopped)
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        outcome = str(app.screen.query_one("#finish-outcome").render())
        assert outcome.startswith("■ Stopped: budget reached") and "ioncannon resume" in outcome and "bundle" in outcome


@pytest.mark.parametrize("width", [80, 100])
async def test_download_commands_stay_on_one_line_each_and_c_copies_rsync(
    tmp_path: Path, vast_env: tuple[dict[str, str], Path], width: int,
) -> None:
    env, _ = vast_env
    paths, spec = finished_job(tmp_path)
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(width, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, FinishScreen) and screen.commands is not None
        commands = screen.query_one("#finish-download")
        longest = max(len(screen.commands.scp), len(screen.commands.rsync))
        assert longest > width  # the case that used to wrap
        assert commands.size.height == 2 and commands.size.width >= longest  # unwrapped, one line each
        scroller = screen.query_one("#finish-commands")
        assert scroller.max_scroll_x > 0  # the rest is a scroll away
        await pilot.press("c")
        assert app.clipboard == screen.commands.rsync  # sent with OSC 52
        assert screen.commands.rsync in (paths.root / "DOWNLOAD.txt").read_text()


async def test_finish_screen_shows_each_stage_next_to_its_estimate(
    tmp_path: Path, vast_env: tuple[dict[str, str], Path],
) -> None:
    from ioncannon.job.events import StageFinished
    from ioncannon.job.timings import write_estimate

    env, _ = vast_env
    paths, spec = finished_job(tmp_path)
    write_estimate(paths, {"prepare": 3, "class_images": 40, "cache": 8, "train": 99, "export": 7, "generate": 44,
                           "package": 1})
    for stage, seconds in (("prepare", 2.2), ("class_images", 51.0), ("cache", 7.9), ("train", 1500.0),
                           ("export", 6.5), ("generate", 48.0), ("package", 0.4)):
        append_line(paths.events_file, StageFinished(stage=stage, seconds=seconds).dumps())
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        lines = str(app.screen.query_one("#finish-money").render()).splitlines()
        rows = {line.split()[1] if line.startswith("stages") else line.split()[0]: line for line in lines[1:9]}
        assert rows["photos"].startswith("stages") and "2s" in rows["photos"] and "estimated 3 s" in rows["photos"]
        assert "51s" in rows["class"] and "estimated 40 s" in rows["class"]
        assert "25m 00s" in rows["train"] and "estimated 2 min" in rows["train"]
        assert "all" in rows and "26m 56s" in rows["all"] and "estimated 3 min" in rows["all"]


async def test_a_job_created_without_an_estimate_shows_no_stage_rows(
    tmp_path: Path, vast_env: tuple[dict[str, str], Path],
) -> None:
    env, _ = vast_env
    paths, spec = finished_job(tmp_path)
    app = FinishApp(FinishScreen(paths, spec, env=env))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "stages" not in str(app.screen.query_one("#finish-money").render())


async def test_a_small_terminal_says_what_is_below_the_fold(tmp_path: Path) -> None:
    paths, spec = finished_job(tmp_path)
    app = FinishApp(FinishScreen(paths, spec, env={}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        more = app.screen.query_one("#finish-more")
        assert more.display and "download commands" in str(more.render()) and "subject's data" in str(more.render())
        await pilot.press("end")
        await pilot.pause()
        assert not more.display  # everything is on screen now
    async with FinishApp(FinishScreen(paths, spec, env={})).run_test(size=(120, 60)) as pilot:
        await pilot.pause()
        assert not pilot.app.screen.query_one("#finish-more").display  # a tall terminal shows it all
