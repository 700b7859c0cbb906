"""The hardware screen's keys: preset and mode switch the plan the job would run, and are remembered."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ioncannon.engine.hardware import GpuInfo, HardwareInfo
from ioncannon.session import SessionStore, WizardSession, load_session
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs import ChoiceDialog
from ioncannon.tui.screens.hardware import HardwareScreen

from .conftest import shown, wait_for

L4 = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA L4", 22.5, 22.0)], disk_free_gib=200.0, cpu_count=8, ram_gib=31.0)
TINY_CARD = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA T400", 2.0, 1.8)], disk_free_gib=200.0, cpu_count=8, ram_gib=31.0)


def open_on_hardware(workdir: Path, tmp_path: Path, hardware: HardwareInfo) -> IonCannonApp:
    SessionStore(workdir, WizardSession()).update(step="hardware", photos_dir=str(tmp_path), identifier="zwx")
    return IonCannonApp(workdir, hardware_probe=lambda _: hardware, proc=tmp_path / "no-proc")


async def test_preset_and_mode_keys_change_the_plan(tui_workdir: Path, tmp_path: Path) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, L4)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.choice is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen) and screen.choice is not None
        assert screen.choice.plan.mode == "full" and screen.choice.plan.preset == "recommended"
        await pilot.press("ctrl+l")
        assert screen.choice.plan.mode == "lora" and load_session(tui_workdir).mode == "lora"
        await pilot.press("ctrl+p")
        assert screen.choice.plan.preset == "classic" and load_session(tui_workdir).preset == "classic"
        assert "classic preset" in shown(screen.query_one("#hardware-plan", Static))
        # what is shown is what would run
        assert screen.spec_for("x").train == screen.choice.plan


async def test_a_card_too_small_for_every_plan_is_refused(tui_workdir: Path, tmp_path: Path) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, TINY_CARD)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.hardware is not None,
                       what="probe")
        await pilot.press("ctrl+n")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ChoiceDialog)
        message = shown(app.screen.query_one("#hardware-message", Static))
        assert "Can't start" in message and "NVIDIA T400" in message
    assert not any(p.is_dir() for p in tui_workdir.iterdir())  # no job was created


async def test_budget_cap_in_dollars_or_minutes_reaches_the_spec(tui_workdir: Path, tmp_path: Path) -> None:
    app = open_on_hardware(tui_workdir, tmp_path, L4)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        screen = app.screen
        assert isinstance(screen, HardwareScreen)
        note = screen.query_one("#hardware-budget-note", Static)
        await pilot.press("tab", *"20")  # dollars, but no hourly price yet
        assert "needs the price per hour" in shown(note)
        await pilot.press("ctrl+n")
        assert not isinstance(app.screen, ChoiceDialog)
        assert "needs the price per hour" in shown(screen.query_one("#hardware-message", Static))

        await pilot.press("shift+tab", *"2.5")
        assert "stops the job at $20.00 (after 8 h 00 min)" in shown(note)
        spec = screen.spec_for("x")
        assert (spec.budget_money, spec.budget_minutes, spec.hourly_price) == (20.0, None, 2.5)

        await pilot.press("tab", "ctrl+u", *"90m")
        assert "stops the job after 1 h 30 min, ≈ $3.75" in shown(note)
        assert (screen.spec_for("x").budget_money, screen.spec_for("x").budget_minutes) == (None, 90.0)
        assert load_session(tui_workdir).budget == "90m"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="confirm")
        assert "stops itself after 1 h 30 min" in shown(app.screen.query_one(".dialog-body", Static))
        await pilot.press("escape")

        await pilot.press("ctrl+u", *"soon")
        assert "not a budget" in shown(note)
        await pilot.press("ctrl+n")
        assert "Budget cap" in shown(screen.query_one("#hardware-message", Static))
