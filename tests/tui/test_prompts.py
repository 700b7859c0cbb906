"""The prompts step: toggle, add, edit (the pack's own validation inline), run length, remembered answers."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from ioncannon.job.paths import JobPaths
from ioncannon.job.prompts import load_pack
from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.dialogs.choice import ChoiceDialog
from ioncannon.tui.dialogs.style import StyleDialog
from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.screens.prompts import PromptsScreen
from ioncannon.tui.session import RUN_LENGTHS, SessionStore, WizardSession, load_session

from .conftest import shown, wait_for
from .test_hardware import L4


def open_on_prompts(workdir: Path, tmp_path: Path) -> IonCannonApp:
    SessionStore(workdir, WizardSession()).update(step="prompts", photos_dir=str(tmp_path), identifier="ohwx",
                                                  class_choice="dog")
    return IonCannonApp(workdir, hardware_probe=lambda _: L4, proc=tmp_path / "no-proc")


async def test_edit_toggle_and_length_are_remembered_and_reach_the_job_spec(tui_workdir: Path, tmp_path: Path) -> None:
    built_in = load_pack()
    app = open_on_prompts(tui_workdir, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PromptsScreen), what="prompts")
        screen = app.screen
        assert isinstance(screen, PromptsScreen)
        assert screen.query_one(DataTable).row_count == len(built_in) >= 12
        # the highlighted style is shown in full, with the subject in place of {token}
        assert built_in[0].render("ohwx", "dog") in shown(screen.query_one("#prompts-detail", Static)).replace("\n", "")

        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, StyleDialog), what="edit dialog")
        await pilot.press("ctrl+u", *"a portrait, no subject", "enter")  # no {token}: refused inline
        dialog = app.screen
        assert isinstance(dialog, StyleDialog)
        assert "{token}" in shown(dialog.query_one("#style-error", Static))
        await pilot.press("ctrl+u", *"a ceramic figurine of {token}", "tab", "tab", "ctrl+u", *"77", "enter")
        await wait_for(pilot, lambda: app.screen is screen, what="dialog closed")
        first = screen.pack_styles[0]
        assert (first.keyword, first.prompt, first.seed) == (built_in[0].keyword, "a ceramic figurine of {token}", 77)

        await pilot.press("down", "space", "l", "l")
        session = load_session(tui_workdir)
        assert [s["enabled"] for s in session.prompt_styles or []][:3] == [True, False, True]
        assert session.run_length == "long"
        assert "100" in shown(screen.query_one("#prompts-length", Static))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.choice is not None,
                       what="hardware")
        hardware = app.screen
        assert isinstance(hardware, HardwareScreen)
        spec = hardware.spec_for("ohwx-1")
        assert spec.generate.images_per_prompt == RUN_LENGTHS["long"]
        assert spec.generate.prompt_pack == str(JobPaths(tui_workdir.resolve() / "ohwx-1").prompt_pack_file)

    # a dropped link: the edits are still there
    SessionStore.open(tui_workdir).update(step="prompts")
    again = IonCannonApp(tui_workdir, hardware_probe=lambda _: L4, proc=tmp_path / "no-proc")
    async with again.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(again.screen, PromptsScreen), what="prompts again")
        screen = again.screen
        assert isinstance(screen, PromptsScreen)
        assert screen.pack_styles[0].seed == 77 and not screen.pack_styles[1].enabled
        await pilot.press("r")  # asks first: one letter never throws the edits away
        await pilot.pause()
        assert isinstance(again.screen, ChoiceDialog) and "can't be undone" in again.screen.body_text
        await pilot.press("escape")
        await pilot.pause()
        assert screen.pack_styles[0].seed == 77 and load_session(tui_workdir).prompt_styles is not None
        await pilot.press("r", "y")  # back to the pack as shipped
        await pilot.pause()
        assert screen.pack_styles == built_in and load_session(tui_workdir).prompt_styles is None


async def test_add_a_style_and_refuse_a_pack_with_nothing_on(tui_workdir: Path, tmp_path: Path) -> None:
    app = open_on_prompts(tui_workdir, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PromptsScreen), what="prompts")
        screen = app.screen
        assert isinstance(screen, PromptsScreen)
        count = len(screen.pack_styles)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, StyleDialog), what="add dialog")
        await pilot.press(*"portrait", "enter")  # the built-in pack already has this keyword
        assert "used twice" in shown(app.screen.query_one("#style-error", Static))
        await pilot.press("ctrl+u", *"pirate", "tab", "ctrl+e", *"as a pirate", "enter")
        await wait_for(pilot, lambda: app.screen is screen, what="dialog closed")
        added = screen.pack_styles[-1]
        assert (added.keyword, added.prompt, added.enabled) == ("pirate", "a photo of {token}, as a pirate", True)
        assert added.seed not in {s.seed for s in screen.pack_styles[:-1]}
        assert len(screen.pack_styles) == count + 1

        for row in range(count + 1):  # every style off: nothing but the bare token would run
            screen.query_one(DataTable).move_cursor(row=row)
            await pilot.pause()
            if screen.pack_styles[row].enabled:
                await pilot.press("space")
        assert not any(s.enabled for s in screen.pack_styles)
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, PromptsScreen)
        assert "Turn at least one style on" in shown(screen.query_one("#prompts-message", Static))
        while load_session(tui_workdir).run_length != "bare":
            await pilot.press("l")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen), what="hardware")
