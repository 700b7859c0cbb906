"""Columns size to the terminal: what is cut ends in "…", and the selected row is shown in full below the table."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from ioncannon.tui.screens.check import CheckScreen
from ioncannon.tui.screens.prompts import PromptsScreen

from .conftest import shown, wait_for
from .test_snapshots import box, make_app, saved_session  # noqa: F401 - fixtures


def spare(table: DataTable) -> int:  # type: ignore[type-arg]
    used = sum(c.get_render_width(table) for c in table.columns.values())
    return table.size.width - used


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_check_fits_its_columns_and_shows_the_cut_text_in_full(box: Path, size: tuple[int, int]) -> None:  # noqa: F811
    saved_session(box, step="check", photos_dir="photos", identifier="zwx", family="sd15")  # judged at 512 px
    app = make_app(box)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CheckScreen) and app.screen.scanned, what="scan")
        screen = app.screen
        assert isinstance(screen, CheckScreen)
        table = screen.query_one(DataTable)
        assert 0 <= spare(table) <= 3  # no empty columns while text is cut
        row = next(i for i, f in enumerate(screen.findings) if f.file == "IMG_0007.jpg")
        what = str(table.get_row_at(row)[2])
        full = screen._what(screen.findings[row])
        # the table says what happens without cutting a word; the bracketed detail is in the panel below
        assert "EXIF orientation" in full and what == "turned upright · face crop"
        table.move_cursor(row=row)
        await pilot.pause()
        detail = " ".join(shown(screen.query_one("#check-reasons", Static)).split())
        assert full in detail


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_prompts_column_takes_the_width_and_the_detail_shows_the_whole_prompt(
        box: Path, size: tuple[int, int]) -> None:  # noqa: F811
    saved_session(box, step="prompts", photos_dir="photos", identifier="zwx")
    app = make_app(box)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PromptsScreen), what="prompts")
        screen = app.screen
        assert isinstance(screen, PromptsScreen)
        table = screen.query_one(DataTable)
        await pilot.pause()
        assert 0 <= spare(table) <= 3
        if size[0] == 100:
            assert table.columns["prompt"].width > 70  # it used to stop at 52 with the rest of the row empty
        first = screen.pack_styles[0]
        cell = str(table.get_row_at(0)[2])
        assert cell == first.prompt or (cell.endswith("…") and first.prompt.startswith(cell[:-1]))
        detail = " ".join(shown(screen.query_one("#prompts-detail", Static)).split())
        assert first.render("zwx", "person") in detail


async def test_the_budget_hint_fits_beside_its_box_at_80_columns(box: Path) -> None:  # noqa: F811
    from ioncannon.tui.screens.hardware import HardwareScreen

    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx", hourly_price=2.49, family="sd15")
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.hardware is not None,
                       what="probe")
        note = app.screen.query_one("#hardware-budget-note", Static)
        text = shown(note).strip()
        assert "then stops" in text and len(text) <= note.content_region.width
