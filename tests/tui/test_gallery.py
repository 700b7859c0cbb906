"""The results can be looked at afterwards: finish opens a gallery, and generate stays until the person moves on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from textual.widgets import Static

from ioncannon.job.events import JobFinished
from ioncannon.job.fsio import append_line
from ioncannon.job.paths import JobPaths
from ioncannon.job.state import JobState, write_state
from ioncannon.rental import bundle
from ioncannon.tui.screens.finish import FinishScreen
from ioncannon.tui.screens.gallery import GalleryScreen
from ioncannon.tui.screens.generate import GenerateScreen

from .conftest import shown, wait_for
from .test_finish_screen import FinishApp, finished_job
from .test_snapshots import NOW, box, held_lock, make_app  # noqa: F401 - fixtures
from .test_stars import generated_job


def info(app: FinishApp) -> str:
    return shown(app.screen.query_one("#gallery-info", Static))


def caption(app: FinishApp) -> str:
    return shown(app.screen.query_one(".preview-caption", Static))


async def test_finish_opens_a_gallery_to_page_star_and_see_the_contact_sheet(tmp_path: Path) -> None:
    paths, spec = finished_job(tmp_path)
    os.utime(paths.outputs / "zwx_comic" / "zwx_comic-0000.jpg", (1, 1))  # made first
    app = FinishApp(FinishScreen(paths, spec, env={}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, GalleryScreen), what="gallery")
        assert "prompt 1/2: comic · collage of 4 images" in info(app)
        assert "zwx_comic-0000.jpg" in caption(app)
        await pilot.press("right")
        assert "prompt 2/2: oil" in info(app)
        await pilot.press("right")  # stays on the last one
        assert "prompt 2/2: oil" in info(app)
        await pilot.press("down", "down", "down")
        assert "image 3/4" in info(app) and "samples/0002.png" in caption(app)
        await pilot.press("s")
        assert bundle.load_starred(paths) == ["outputs/zwx_oil/samples/0002.png"]
        assert "★" in info(app) and "1 starred for the bundle" in info(app)
        assert "s unstars this image" in info(app) and "s stars" not in info(app)
        await pilot.press("s")  # and unstarred again
        assert bundle.load_starred(paths) == [] and "nothing starred yet" in info(app)
        assert "s stars this image" in info(app)
        await pilot.press("up", "up", "up", "s")  # the collage stars all its images
        assert len(bundle.load_starred(paths)) == 4 and "★ 4/4" in info(app)
        assert "s unstars all its images" in info(app)
        await pilot.press("o")
        assert "contact sheet" in info(app) and "contact_sheet.jpg" in caption(app)
        await pilot.press("o")
        assert "prompt 2/2: oil" in info(app)
        labels = {b.description for (_, b, _, _) in app.screen.active_bindings.values() if b.show}
        assert {"Back", "Prev", "Next", "Images", "Star", "Sheet"} <= labels
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FinishScreen), what="back on finish")


async def test_generate_stays_when_the_job_finishes_until_enter(
        box: Path, held_lock: Callable[[JobPaths], None]) -> None:  # noqa: F811
    paths = generated_job(box)
    held_lock(paths)
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")  # attach
        await wait_for(pilot, lambda: isinstance(app.screen, GenerateScreen) and len(app.job_view.collages) == 2,
                       what="collages")
        screen = app.screen
        assert isinstance(screen, GenerateScreen) and screen.check_action("next", ()) is False
        append_line(paths.events_file, JobFinished(seconds=590.0, t=NOW).dumps())
        write_state(paths, JobState(status="finished", started_at=NOW - 600, elapsed_s=590.0))
        await wait_for(pilot, lambda: app.job_view.state.status == "finished", what="the job to finish")
        await pilot.pause(1.0)
        assert app.screen is screen  # still looking at the pictures
        assert "All images are made" in shown(screen.query_one("#job-status", Static))
        title = shown(screen.query_one("#job-progress .progress-title", Static))
        stats = shown(screen.query_one("#job-progress .progress-stats", Static))
        assert "✓ done" in title and "Packaging" not in title and "ETA" not in stats
        labels = {b.key: b.description for (_, b, enabled, _) in screen.active_bindings.values() if enabled}
        assert labels.get("ctrl+q") == "Quit"  # nothing runs any more: no "Leave/stop"
        await pilot.press("left")
        assert "1/2 portrait" in shown(screen.query_one(".preview-caption", Static))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, FinishScreen), what="finish")


async def test_a_tall_contact_sheet_is_shown_in_parts_that_fill_the_preview(tmp_path: Path) -> None:
    from PIL import Image

    from ioncannon.tui.gallery import sheet_pages

    paths, spec = finished_job(tmp_path)
    Image.new("RGB", (512, 1920), (40, 80, 120)).save(paths.contact_sheet)  # 15 prompts, a row each
    app = FinishApp(FinishScreen(paths, spec, env={}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, GalleryScreen), what="gallery")
        await pilot.press("o")
        await pilot.pause()
        preview = app.screen.query_one("#gallery-preview")
        parts = sheet_pages(paths.contact_sheet, preview.size.width, preview.size.height - 1)
        assert len(parts) > 1 and parts[0].width / parts[0].height > 1  # wider than tall: it fills the box
        assert f"part 1/{len(parts)}" in caption(app) and "contact_sheet.jpg" in caption(app)
        await pilot.press("down")
        assert f"part 2/{len(parts)}" in caption(app)
