"""A dropped link loses nothing: the wizard reopens on the same screen with the answers filled in."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, RadioSet, Static

from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.screens.check import CheckScreen
from ioncannon.tui.screens.photos import PhotosScreen
from ioncannon.tui.screens.subject import SubjectScreen
from ioncannon.tui.screens.welcome import WelcomeScreen

from .conftest import shown, wait_for


async def test_reopens_on_the_saved_screen_with_answers(tui_workdir: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    from ioncannon.job.plan.demo import demo_photos_dir

    for source in demo_photos_dir().iterdir():
        (photos / source.name).write_bytes(source.read_bytes())

    first = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with first.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(first.screen, WelcomeScreen), what="welcome")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(first.screen, PhotosScreen), what="photos")
        await pilot.press(*str(photos), "enter")  # the cursor starts in the path box
        await wait_for(pilot, lambda: isinstance(first.screen, CheckScreen) and first.screen.scanned, what="scan")
        check = first.screen
        assert isinstance(check, CheckScreen)
        await pilot.press("d", "ctrl+n")
        dropped = check.findings[0].file
        await wait_for(pilot, lambda: isinstance(first.screen, SubjectScreen), what="subject")
        await pilot.press(*"ohwx", "tab", "right", "enter")
        assert first.store.session.class_choice == "dog"
        # the link drops here: no quit, no goodbye
    second = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with second.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(second.screen, SubjectScreen), what="subject again")
        assert second.screen.query_one("#subject-identifier", Input).value == "ohwx"
        radio = second.screen.query_one(RadioSet)
        assert radio.pressed_button is not None and radio.pressed_button.name == "dog"
        assert "a photo of ohwx dog" in shown(second.screen.query_one("#subject-prompt", Static))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(second.screen, CheckScreen) and second.screen.scanned, what="check")
        check = second.screen
        assert isinstance(check, CheckScreen)
        row = next(i for i, f in enumerate(check.findings) if f.file == dropped)
        assert str(check.query_one(DataTable).get_row_at(row)[0]) == "dropped"
        assert "ohwx dog_001.png" in [str(c) for r in range(len(check.findings))
                                      for c in check.query_one(DataTable).get_row_at(r)]
