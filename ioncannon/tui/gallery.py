"""Paging the finished collages and their images, and starring what to take home (pure: no Textual)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ioncannon.job.paths import JobPaths
from ioncannon.rental import bundle

STAR = "★"


@dataclass(frozen=True)
class Shown:
    """What the preview shows: a collage (image None) or one image of it."""

    keyword: str
    collage: Path
    image: Path | None
    index: int  # which collage, 0-based
    count: int  # how many collages
    image_index: int  # which image of the collage, -1 for the collage itself
    image_count: int

    @property
    def path(self) -> Path:
        return self.image if self.image is not None else self.collage


@dataclass(frozen=True)
class Collage:
    """A finished prompt's collage on disk."""

    keyword: str
    path: Path


def collages_on_disk(paths: JobPaths, identifier: str) -> list[Collage]:
    """Every prompt's collage (`outputs/<identifier>_<keyword>/*-0000.jpg`) in the order they were made."""
    if not paths.outputs.is_dir():
        return []
    found = [p for p in paths.outputs.glob("*/*-0000.jpg") if p.is_file()]
    found.sort(key=lambda p: (p.stat().st_mtime, p.name))
    return [Collage(p.parent.name.removeprefix(f"{identifier}_"), p) for p in found]


def images_of(collage: str | Path) -> list[Path]:
    """The images a collage was made of: `<prompt folder>/samples/*.png`, in order."""
    samples = Path(collage).parent / "samples"
    return sorted(samples.glob("*.png")) if samples.is_dir() else []


def star_targets(shown: Shown) -> list[Path]:
    """What `s` stars: the image on show, or every image of the collage on show."""
    if shown.image is not None:
        return [shown.image]
    return images_of(shown.collage)


def toggle(paths: JobPaths, shown: Shown) -> bool | None:
    """Star or unstar what is shown; a collage stars all its images, or unstars them once all are starred.

    Returns whether it is starred now, or None when there is nothing to star (the contact sheet).
    """
    targets = star_targets(shown)
    if not targets:
        return None
    starred = starred_set(paths)
    keys = [_key(paths, t) for t in targets]
    want = not all(k in starred for k in keys)
    for key in keys:
        if (key in starred) != want:
            bundle.toggle_star(paths, key)
    return want


def starred_set(paths: JobPaths) -> set[str]:
    return set(bundle.load_starred(paths))


def star_caption(paths: JobPaths, shown: Shown) -> str:
    """`★` for a starred image; `★ 3/16` for a collage with starred images; empty otherwise."""
    starred = starred_set(paths)
    if shown.image is not None:
        return STAR if _key(paths, shown.image) in starred else ""
    images = images_of(shown.collage)
    count = sum(1 for i in images if _key(paths, i) in starred)
    return f"{STAR} {count}/{len(images)}" if count else ""


def _key(paths: JobPaths, image: Path) -> str:
    """The job-relative name the star list keeps, whether the job's root was given relative or absolute."""
    return image.resolve().relative_to(paths.root.resolve()).as_posix()


def sheet_pages(path: Path, columns: int, rows: int) -> list[Image.Image]:
    """A contact sheet cut into parts that each fill a preview of `columns` × `rows` cells.

    A sheet is a row per prompt, so it is tall; shown whole in a short terminal it would be a strip a few
    columns wide. A cell shows one pixel across and two down, so a part is `2 × rows / columns` as tall as wide.
    """
    try:
        with Image.open(path) as opened:
            sheet = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return []
    if columns <= 0 or rows <= 0:
        return [sheet]
    part = max(1, round(sheet.width * 2 * rows / columns))
    if part >= sheet.height:
        return [sheet]
    return [sheet.crop((0, top, sheet.width, min(sheet.height, top + part))) for top in range(0, sheet.height, part)]
