"""Starring while paging the generate screen's previews: an image, a whole collage, and the bundle that follows."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ioncannon.job.events import CollageReady, Event, StageStarted
from ioncannon.job.lock import try_lock
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import load_spec
from ioncannon.rental import bundle
from ioncannon.tui.screens.generate import GenerateScreen

from .conftest import shown, wait_for
from .test_snapshots import NOW, box, gradient, held_lock, job_on_disk, make_app  # noqa: F401 - fixtures

KEYWORDS = ("portrait", "comic")


def generated_job(workdir: Path) -> JobPaths:
    root = JobPaths(workdir / "zwx-20270115-0930")
    events: list[Event] = [StageStarted(stage="generate", t=NOW - 60)]
    for n, keyword in enumerate(KEYWORDS):
        for i in range(3):
            gradient(root.outputs / f"zwx_{keyword}" / "samples" / f"{i:04d}.png", 32, phase=i)
        collage = gradient(root.outputs / f"zwx_{keyword}" / f"zwx_{keyword}-0000.jpg", 48, phase=n)
        events.append(CollageReady(keyword=keyword, path=collage, t=NOW - 30 + n))
    done = ["prepare", "class_images", "cache", "train", "export"]
    return job_on_disk(workdir, "generate", events, done, 6, 6)


def caption(screen: GenerateScreen) -> str:
    return shown(screen.query_one(".preview-caption", Static)).strip()


async def test_star_an_image_and_a_whole_collage(box: Path) -> None:  # noqa: F811
    paths = generated_job(box)
    runner = try_lock(paths)  # a live runner holds the job while the person stars
    assert runner is not None
    runner.record(4242)
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")  # attach
        await wait_for(pilot, lambda: isinstance(app.screen, GenerateScreen) and len(app.job_view.collages) == 2,
                       what="collages")
        screen = app.screen
        assert isinstance(screen, GenerateScreen)
        await wait_for(pilot, lambda: "2/2 comic" in caption(screen), what="newest collage")

        await pilot.press("left", "down", "down")  # portrait's second image
        assert "1/2 portrait · image 2/3" in caption(screen) and "★" not in caption(screen)
        await pilot.press("s")
        assert bundle.load_starred(paths) == ["outputs/zwx_portrait/samples/0001.png"]
        assert caption(screen).endswith("★")

        await pilot.press("up", "up")  # back on the collage: one of its three images is starred
        assert "★ 1/3" in caption(screen)
        await pilot.press("s")  # a collage stars all its images…
        assert sorted(bundle.load_starred(paths)) == [f"outputs/zwx_portrait/samples/{i:04d}.png" for i in range(3)]
        assert "★ 3/3" in caption(screen)
        await pilot.press("right", "s", "s")  # …and unstars them once all are starred
        assert len(bundle.load_starred(paths)) == 3 and "★" not in caption(screen)

    runner.release()  # the job has finished: a bundle is made only of a job nothing writes to any more
    # the starred-only bundle takes exactly those images
    plan = bundle.plan_bundle(paths, load_spec(paths), images="starred", model_formats=())
    images = sorted(e.name for e in plan.entries if e.kind == "image")
    assert images == [f"outputs/zwx_portrait/samples/{i:04d}.png" for i in range(3)]
