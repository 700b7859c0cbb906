"""At 80×24 nothing the person needs is cut: a budget error and a style's negative prompt are read in full."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ioncannon.tui.screens.hardware import HardwareScreen
from ioncannon.tui.screens.prompts import PromptsScreen

from .conftest import shown, wait_for
from .test_snapshots import box, make_app, saved_session  # noqa: F401 - fixtures

__all__ = ["box"]


async def test_a_budget_error_wraps_beside_its_box(box: Path) -> None:  # noqa: F811
    saved_session(box, step="hardware", photos_dir="photos", identifier="zwx", hourly_price=2.49, budget="soon",
                  family="sd15")
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, HardwareScreen) and app.screen.estimate_s is not None,
                       what="plan")
        await pilot.pause()
        note = app.screen.query_one("#hardware-budget-note", Static)
        assert "type dollars (20) or minutes (90m)" in shown(note)
        assert note.size.height >= 2  # wrapped, not cut with an ellipsis


async def test_the_whole_negative_prompt_shows(box: Path) -> None:  # noqa: F811
    saved_session(box, step="prompts", photos_dir="photos", identifier="zwx")
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PromptsScreen), what="prompts")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PromptsScreen)
        negative = screen.pack_styles[0].negative
        detail = screen.query_one("#prompts-detail", Static)
        assert negative in " ".join(shown(detail).split())
        drawn = app.export_screenshot().replace("&#160;", " ")
        assert "watermark" in negative and "watermark" in drawn and "…" not in drawn.split("not:")[-1][:200]
