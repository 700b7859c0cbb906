"""The hardware step's door check of the base model: a hanging hub never hangs the wizard, and it says one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from ioncannon.tui.dialogs.choice import ChoiceDialog
from ioncannon.tui.screens.hardware import HardwareScreen
from tests.engine.hub_repos import point_at
from tests.hanging_hub import LocalHub, hanging_hub
from tests.tui.test_hardware import L4, open_on_hardware

from .conftest import shown, wait_for


async def test_a_hanging_hub_leaves_the_wizard_working_and_then_says_so(tui_workdir: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.engine import hub_files

    monkeypatch.setattr(hub_files, "HUB_TIMEOUT_S", 3.0)
    with hanging_hub() as hub:
        point_at(LocalHub(hub.url), tmp_path / "hf", monkeypatch)
        app = open_on_hardware(tui_workdir, tmp_path, L4, family="sd15")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.choice is not None,
                           what="plan")
            screen = app.screen
            assert isinstance(screen, HardwareScreen)
            plan = screen.query_one("#hardware-plan", Static)
            if screen.availability is None:  # still asking: the screen answers keys meanwhile
                assert "checking the base model" in shown(plan)
                await pilot.press("ctrl+l")
                assert screen.choice is not None and screen.choice.plan.mode == "lora"
                await pilot.press("ctrl+n")  # not started while the answer is out
                assert not isinstance(app.screen, ChoiceDialog)
                assert "Checking that the base model can be had" in shown(screen.query_one("#hardware-message",
                                                                                          Static))
            await wait_for(pilot, lambda: screen.availability is not None, what="the hub's timeout")
            assert hub.held  # the hub was asked
            assert "did not answer within 3 s" in shown(plan)
            await pilot.press("ctrl+n")
            assert not isinstance(app.screen, ChoiceDialog)
            message = shown(screen.query_one("#hardware-message", Static))
            assert "did not answer" in message and "Traceback" not in message
    assert not [p for p in tui_workdir.iterdir() if (p / ".ioncannon").exists()]  # no job was created
