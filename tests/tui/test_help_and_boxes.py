"""`?` and F1 list every key of a step; text boxes take the first key typed, never losing it or the answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from ioncannon.engine.hardware import GpuInfo, HardwareInfo
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs.help import HelpDialog
from ioncannon.tui.dialogs.style import StyleDialog
from ioncannon.tui.screens.base import WizardScreen
from ioncannon.tui.screens.photos import PhotosScreen
from ioncannon.tui.screens.prompts import PromptsScreen
from ioncannon.tui.session import SessionStore, WizardSession

from .conftest import wait_for

L4 = HardwareInfo(gpus=[GpuInfo(0, "NVIDIA L4", 24.0, 23.0)], disk_free_gib=100.0, cpu_count=8, ram_gib=32.0)
# Keys the footer leaves out, which the help must still name (per step).
HIDDEN = {
    "welcome": ["^n"],
    "photos": ["Up a folder", "tab / shift+tab"],
    "check": ["↑ ↓"],
    "subject": ["tab / shift+tab"],
    "prompts": ["↑ ↓"],
    "hardware": ["^f", "^p", "^l"],
}


def help_text(dialog: HelpDialog) -> str:
    return "\n".join([f"{k} {w}" for k, w in dialog.extra] + [f"{k} {w}" for k, w, _ in dialog.rows])


@pytest.mark.parametrize("step", list(HIDDEN))
async def test_f1_lists_every_key_of_the_step(tui_workdir: Path, tmp_path: Path, step: str) -> None:
    SessionStore(tui_workdir, WizardSession()).update(step=step, photos_dir=str(tmp_path), identifier="zwx")
    app = IonCannonApp(tui_workdir, hardware_probe=lambda _: L4, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WizardScreen) and app.screen.STEP.value == step,
                       what=step)
        screen = app.screen
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpDialog), what="the help")
        dialog = app.screen
        assert isinstance(dialog, HelpDialog)
        text = help_text(dialog)
        for key in HIDDEN[step]:
            assert key in text, f"{key} missing from the help of {step}"
        # every key the footer shows is in the help too
        for _, binding, _, _ in screen.active_bindings.values():
            if binding.show:
                assert binding.description in text
        assert "^q" in text and "esc" in text or step == "welcome"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="the help closed")


async def test_question_mark_opens_help_where_no_box_has_the_key(tui_workdir: Path, tmp_path: Path) -> None:
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, WizardScreen), what="welcome")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpDialog), what="the help")
        assert "set it aside" in help_text(app.screen).lower() or "Set aside" in help_text(app.screen)


async def test_a_path_typed_first_thing_lands_in_the_box(tui_workdir: Path, tmp_path: Path) -> None:
    SessionStore(tui_workdir, WizardSession()).update(step="photos")
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PhotosScreen), what="photos")
        await pilot.press(*"/tmp")
        assert app.screen.query_one("#photos-path", Input).value == "/tmp"


async def test_editing_a_style_adds_to_its_prompt(tui_workdir: Path, tmp_path: Path) -> None:
    SessionStore(tui_workdir, WizardSession()).update(step="prompts", photos_dir=str(tmp_path), identifier="zwx")
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PromptsScreen), what="prompts")
        before = app.screen.pack_styles[0].prompt
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, StyleDialog), what="the style box")
        await pilot.press(*", smiling")
        assert app.screen.query_one("#style-prompt", Input).value == before + ", smiling"
