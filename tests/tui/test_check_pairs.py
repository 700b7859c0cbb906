"""The check screen shows a near shot beside the photo it looks like, and keeps it unless the person drops it."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ioncannon.tui.app import IonCannonApp
from ioncannon.tui.screens.check import CheckScreen
from ioncannon.tui.session import SessionStore, WizardSession
from tests.engine.test_photos_duplicates import BLUE, GREY, portrait

from .conftest import shown, wait_for


async def test_a_near_shot_is_kept_and_shown_beside_its_look_alike(tui_workdir: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    portrait(GREY).save(photos / "a_grey.jpg", quality=92)
    portrait(GREY, dx=-0.05, seed=2).save(photos / "b_moved.jpg", quality=92)
    portrait(BLUE, seed=3).save(photos / "c_blue.jpg", quality=92)
    SessionStore(tui_workdir, WizardSession()).update(step="check", photos_dir=str(photos), identifier="zwx")
    app = IonCannonApp(tui_workdir, proc=tmp_path / "no-proc")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
        screen = app.screen
        assert isinstance(screen, CheckScreen)
        assert len(screen.used()) == 3  # nothing dropped
        row = next(i for i, f in enumerate(screen.findings) if f.file == "b_moved.jpg")
        screen.query_one("#check-table").move_cursor(row=row)  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: "right: a_grey.jpg" in shown(screen.query_one(".preview-caption", Static)),
                       what="the pair side by side")
        assert "looks much like a_grey.jpg" in " ".join(shown(screen.query_one("#check-reasons", Static)).split())
        await pilot.press("d")  # the person decides it adds nothing
        assert len(screen.used()) == 2 and "b_moved.jpg" in app.store.session.excluded
