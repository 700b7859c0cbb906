"""Fixtures for the wizard's tests: an isolated box (config, work dir), a small demo job, runner clean-up."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from ioncannon.job.families import family_info
from ioncannon.job.paths import JobPaths
from ioncannon.job.plans import GeneratePlan, TrainPlan
from ioncannon.tui.dialogs.choice import ErrorDialog
from tests.engine.hub_repos import point_at
from tests.hanging_hub import LocalHub, local_hub
from tests.waiting import patience

# A demo job small enough for a test: every stage still runs for real in the runner process.
SMALL_TRAIN = TrainPlan(
    mode="full", preset="demo", steps=6, learning_rate=1e-3, batch_size=1, prior_preservation=True,
    num_class_images=2, precision="fp32", optimizer="adamw", compile=False, checkpoint_every=3,
    keep_checkpoints=2, sample_every=3,
)
SMALL_PACK = """
[[style]]
keyword = "oil"
prompt = "an oil painting of {token}"
negative = "blurry"
seed = 7

[[style]]
keyword = "comic"
prompt = "a comic drawing of {token}"
negative = "blurry"
seed = 8
"""


def pytest_configure(config: pytest.Config) -> None:
    # textual-image still calls a Pillow API that Pillow has scheduled for removal; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:Image.Image.getdata is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def isolated_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The remembered hourly price and other per-user settings go to a throwaway folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    # The identifier linter looks for the base model's tokenizer: never on the network, never in this box's cache.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def small_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Shrink the demo's plan (train steps, class images, prompt pack) so a whole job takes seconds."""
    import ioncannon.job.plan.demo
    import ioncannon.job.plan.presets

    pack = tmp_path / "pack.toml"
    pack.write_text(SMALL_PACK)

    def shrink(steps: int = SMALL_TRAIN.steps) -> None:
        plan = dataclasses.replace(SMALL_TRAIN, steps=steps)
        monkeypatch.setattr(ioncannon.job.plan.presets, "demo_plan", lambda: plan)
        monkeypatch.setattr(ioncannon.job.plan.demo, "DEMO_GENERATE_PLAN", GeneratePlan(
            sampler="dpm", steps=3, guidance=7.0, images_per_prompt=2, batch_size=2, bare_token_images=2,
            prompt_pack=str(pack),
        ))

    shrink()
    return shrink


@pytest.fixture
def tui_workdir(tmp_path: Path) -> Iterator[Path]:
    """A work dir whose runners are all stopped after the test, whatever happened in it."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    yield workdir
    stop_all_runners(workdir)


def stop_all_runners(workdir: Path) -> None:
    from ioncannon.job.lock import NotTheRunner, request_stop, runner_pid, wait_for_exit

    for job in workdir.iterdir():
        paths = JobPaths(job)
        if not paths.job_file.exists():
            continue
        try:
            if request_stop(paths) and wait_for_exit(paths, 30):
                continue
        except NotTheRunner:  # a test's own lock holder, not a runner: never signalled
            continue
        pid = runner_pid(paths)
        if pid and pid > 0:
            os.kill(pid, signal.SIGKILL)
            wait_for_exit(paths, 10)


def shown(widget: Static) -> str:
    """The text a Static shows, whatever it holds (markup, Text, a rich Table)."""
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 60.0,
                   what: str = "condition") -> None:
    """Poll the running app until `condition` holds (the app keeps processing meanwhile).

    Timeouts are generous on purpose: a loaded CI box may take many seconds to import torch.
    """
    deadline = time.monotonic() + patience(timeout)
    while not condition():
        screen = pilot.app.screen
        if isinstance(screen, ErrorDialog) and "error" not in what:  # no use waiting: say what went wrong
            raise AssertionError(f"an error dialog while waiting for {what}: {screen.message} {screen.hint}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {patience(timeout):.0f} s waiting for {what}; screen: {screen!r}")
        await pilot.pause(0.2)


@pytest.fixture
def answering_hub(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A hub on 127.0.0.1 that has each family's default base model (the door asks it before a job exists)."""
    with local_hub() as hub:
        for family in ("sd15", "sdxl", "flux"):
            hub.add(family_info(family).default_model, tiny_model_dir)
        point_at(hub, tmp_path / "hf", monkeypatch)
        yield hub
