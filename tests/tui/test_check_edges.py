"""The check step's detail stays true after the person changes a photo's crop."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ioncannon.tui.screens.check import CheckScreen

from .conftest import shown, wait_for
from .test_snapshots import box, make_app, saved_session  # noqa: F401 - fixtures

__all__ = ["box"]


async def test_the_face_crop_note_goes_when_the_crop_changes(box: Path) -> None:  # noqa: F811
    saved_session(box, step="check", photos_dir="photos", identifier="zwx")
    app = make_app(box)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
        screen = app.screen
        assert isinstance(screen, CheckScreen)
        for _ in range(20):
            finding = screen.selected()
            if finding is not None and finding.file == "IMG_0001.jpg":
                break
            await pilot.press("down")
        detail = screen.query_one("#check-reasons", Static)
        assert "centred on the face" in shown(detail)
        await pilot.press("c")  # face -> centre
        await pilot.pause()
        assert "crop: centre" in shown(detail) and "centred on the face" not in shown(detail)
