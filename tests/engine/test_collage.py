"""Collages and contact sheets: grid geometry, margins, labels and the JPEG on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ioncannon.engine.generate.collage import MARGIN, grid_columns, make_collage


def _images(folder: Path, count: int, size: int = 64) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.png"
        Image.new("RGB", (size, size), (40 + 20 * i, 200, 10 * i)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize(("count", "columns"), [(1, 1), (4, 2), (5, 3), (16, 4), (64, 8), (100, 10)])
def test_grid_is_near_square(count: int, columns: int) -> None:
    assert grid_columns(count) == columns


def test_collage_dimensions_and_tile_placement(tmp_path: Path) -> None:
    paths = _images(tmp_path, 6, size=200)
    out = make_collage(paths, tmp_path / "c.jpg", columns=3)
    with Image.open(out) as img:
        assert img.format == "JPEG"
        assert img.size == (3 * 200 + 4 * MARGIN, 2 * 200 + 3 * MARGIN)
        # the centre of tile 4 (row 1, col 1) carries that image's colour
        x = MARGIN + (200 + MARGIN) + 100
        y = MARGIN + (200 + MARGIN) + 100
        r, g, _ = img.convert("RGB").getpixel((x, y))
        assert abs(r - (40 + 20 * 4)) < 8 and abs(g - 200) < 8


def test_title_and_labels_add_room_and_tiny_tiles_are_enlarged(tmp_path: Path) -> None:
    paths = _images(tmp_path, 4, size=64)
    plain = make_collage(paths, tmp_path / "plain.jpg", columns=2)
    labelled = make_collage(paths, tmp_path / "labelled.jpg", columns=2, title="sks man", labels=["a", "b", "c", "d"])
    with Image.open(plain) as a, Image.open(labelled) as b:
        assert a.width == 2 * 128 + 3 * MARGIN, "64 px demo images are shown at 128 px"
        assert b.width == a.width and b.height > a.height


def test_wide_grids_are_scaled_to_stay_openable(tmp_path: Path) -> None:
    paths = _images(tmp_path, 10, size=512)
    with Image.open(make_collage(paths, tmp_path / "wide.jpg", columns=10)) as img:
        assert img.width <= 4096


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_collage([], tmp_path / "x.jpg")
    with pytest.raises(ValueError):
        make_collage(_images(tmp_path, 2), tmp_path / "x.jpg", labels=["only one"])
