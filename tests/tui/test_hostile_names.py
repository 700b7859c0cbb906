"""A photo named with escape sequences and a direction override is shown escaped on the check step, in the table
and in the detail, and an error dialog shows exception text as plain printable text."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual.widgets import DataTable, Static

from ioncannon.tui.dialogs.choice import ErrorDialog
from ioncannon.tui.screens.check import CheckScreen

from .conftest import shown, wait_for
from .test_snapshots import box, make_app, saved_session  # noqa: F401 - fixtures

__all__ = ["box"]
HOSTILE = "IMG\x1b]0;owned\x07\x1b[2J\u202egpj.exe.jpg"
RAW = ("\x1b", "\x07", "\u202e")


async def test_hostile_photo_names_are_shown_escaped(box: Path) -> None:  # noqa: F811
    photos = box.parent / "photos"
    shutil.copy(photos / "IMG_0001.jpg", photos / HOSTILE)
    saved_session(box, step="check", photos_dir="photos", identifier="zwx")
    app = make_app(box)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
        screen = app.screen
        assert isinstance(screen, CheckScreen)
        table = screen.query_one(DataTable)
        cells = " ".join(str(cell) for row in range(table.row_count) for cell in table.get_row_at(row))
        assert "\\x1b" in cells and not any(ch in cells for ch in RAW)
        for _ in range(table.row_count):
            finding = screen.selected()
            if finding is not None and finding.file == HOSTILE:
                break
            await pilot.press("down")
        detail = shown(screen.query_one("#check-reasons", Static))
        assert "\\u202e" in detail and not any(ch in detail for ch in RAW)


async def test_an_error_dialog_shows_outside_text_printable(box: Path) -> None:  # noqa: F811
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(ErrorDialog("model \x1b[2J[bold]said[/] no\u202e", "try [red]again\x07"))
        await pilot.pause()
        text = " ".join(shown(w) for w in app.screen.query(Static))
        assert "[bold]said[/]" in text and "[red]again" in text and not any(ch in text for ch in RAW)
