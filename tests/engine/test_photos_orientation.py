"""EXIF orientations 1–8 land the subject upright: checked on pixels, not metadata."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ioncannon.doctor.folder import normalise, scan_folder

SIDE = 600
MARK = 150
RED, GREEN, BLUE, GREY = (220, 30, 30), (30, 200, 30), (30, 30, 220), (110, 110, 110)


def upright() -> np.ndarray:
    """The picture as a viewer should see it: red top-left, green top-right, blue bottom-left."""
    v = np.zeros((SIDE, SIDE, 3), np.uint8)
    v[:] = GREY
    v[:MARK, :MARK] = RED
    v[:MARK, -MARK:] = GREEN
    v[-MARK:, :MARK] = BLUE
    return v


def stored(v: np.ndarray, orientation: int) -> np.ndarray:
    """How a camera stores `v` under each EXIF orientation, written from the EXIF spec's table
    (where the stored 0th row and 0th column sit in the visual image), not from Pillow."""
    return {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],                  # 0th row top, 0th column right
        3: lambda a: a[::-1, ::-1],               # bottom, right
        4: lambda a: a[::-1, :],                  # bottom, left
        5: lambda a: a.transpose(1, 0, 2),        # left, top
        6: lambda a: np.rot90(a, 1),              # right, top
        7: lambda a: np.rot90(a, 1)[:, ::-1],     # right, bottom
        8: lambda a: np.rot90(a, -1),             # left, bottom
    }[orientation](v)


def test_stored_layouts_are_all_different() -> None:
    layouts = {stored(upright(), o).tobytes() for o in range(1, 9)}
    assert len(layouts) == 8  # otherwise the test below could not tell orientations apart


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_every_exif_orientation_comes_out_upright(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        im = Image.fromarray(np.ascontiguousarray(stored(upright(), o)))
        im.save(src / f"o{o}.{fmt.lower()}", format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    findings = scan_folder(src, resolution=128)[:8]
    for f in findings:
        o = int(f.file[1])
        assert f.crop == "centre" and f.size == (SIDE, SIDE)
        assert any(r.startswith("turned upright") for r in f.reasons) == (o != 1), f.file
    # Once upright all eight are the same picture, so seven are flagged as its near-duplicates;
    # that already says the rotations agree. Keep them all to check each one's pixels.
    assert sum(f.drop for f in findings) == 7
    findings = [replace(f, drop=False) for f in findings]
    out = tmp_path / "out"
    written = {f.file: f.output for f in normalise(src, findings, "zwx", "cat", out, resolution=128)}
    q = 128 * MARK // SIDE // 2  # sample the middle of each corner marker
    for o in range(1, 9):
        px = np.asarray(Image.open(out / written[f"o{o}.{fmt.lower()}"]), dtype=np.int16)
        corners = {"top-left": px[q, q], "top-right": px[q, -q - 1], "bottom-left": px[-q - 1, q],
                   "bottom-right": px[-q - 1, -q - 1]}
        for where, want in (("top-left", RED), ("top-right", GREEN), ("bottom-left", BLUE), ("bottom-right", GREY)):
            assert np.abs(corners[where] - np.array(want)).max() < 40, f"orientation {o}: {where} is {corners[where]}"


def test_sideways_landscape_reports_its_upright_size(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.new("RGB", (800, 600), GREY).save(tmp_path / "side.jpg", exif=exif)
    [f] = scan_folder(tmp_path)[:1]
    assert f.size == (600, 800)
