"""Near-duplicates: copies of one shot are dropped, other shots of the same subject are kept (and flagged)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFilter

from ioncannon.doctor.folder import PhotoFinding, scan_folder, usable
from tests.engine import photo_corpus

GREY, BLUE, BEIGE = (128, 128, 128), (70, 90, 200), (220, 200, 170)


def portrait(background: tuple[int, int, int], radius: float = 0.33, dx: float = 0.0, seed: int = 0,
             shirt: tuple[int, int, int] = (40, 60, 160), size: tuple[int, int] = (640, 800)) -> Image.Image:
    """The demo subject's face, big in the frame on a plain background: the hard case for a duplicate test."""
    w, h = size
    im = Image.new("RGB", size, background)
    d = ImageDraw.Draw(im)
    r, cx, cy = radius * w, w / 2 + dx * w, h * 0.42
    d.ellipse([cx - r * 1.9, cy + r * 1.15, cx + r * 1.9, cy + r * 4.0], fill=shirt)
    photo_corpus.demo_module().draw_face(d, cx, cy, r)
    im = im.filter(ImageFilter.GaussianBlur(0.5))
    noise = Image.frombytes("L", size, random.Random(seed).randbytes(w * h)).convert("RGB")
    return Image.blend(im, noise, 0.04)


def by_file(folder: Path) -> dict[str, PhotoFinding]:
    return {f.file: f for f in scan_folder(folder)}


def test_other_shots_of_the_same_subject_are_kept(tmp_path: Path) -> None:
    shots = {
        "grey.jpg": portrait(GREY), "bigger.jpg": portrait(GREY, radius=0.37, seed=1),
        "moved.jpg": portrait(GREY, dx=-0.05, seed=2), "blue.jpg": portrait(BLUE, seed=3),
        "beige.jpg": portrait(BEIGE, radius=0.30, seed=4),
        "green_shirt.jpg": portrait(GREY, seed=6, shirt=(30, 150, 60)),
        "bigger_on_blue.jpg": portrait(BLUE, radius=0.37, seed=7).resize((560, 700)),
    }
    for name, im in shots.items():
        im.save(tmp_path / name, quality=92)
    findings = by_file(tmp_path)
    assert {f.file for f in usable(findings.values())} == set(shots)  # not one dropped
    # the closest of them (same background, face a little bigger or moved) are pointed out, not removed
    for name in ("grey.jpg", "moved.jpg"):  # scanned after bigger.jpg and grey.jpg, which they look like
        assert findings[name].similar_to in ("bigger.jpg", "grey.jpg") and findings[name].status == "flagged"
        assert not findings[name].drop and "looks much like" in findings[name].reasons[0]
    assert findings["blue.jpg"].similar_to in (None, "bigger_on_blue.jpg")  # never one on another background


@pytest.mark.parametrize("copy", ["resized", "recompressed", "cropped", "cropped_corner"])
def test_a_copy_of_one_shot_is_dropped_keeping_the_larger(tmp_path: Path, copy: str) -> None:
    for i, background in enumerate((GREY, BLUE, BEIGE)):
        portrait(background, radius=0.30 + 0.03 * i, seed=i).save(tmp_path / f"shot{i}.jpg", quality=92)
    original = photo_corpus.scene(11)
    original.save(tmp_path / "original.jpg", quality=92)
    w, h = original.size
    made = {
        "resized": original.resize((w // 2, h // 2)),
        "recompressed": original,
        "cropped": original.crop((int(w * 0.05), int(h * 0.05), int(w * 0.95), int(h * 0.95))),
        "cropped_corner": original.crop((int(w * 0.1), int(h * 0.1), w, h)),
    }[copy]
    made.save(tmp_path / "copy.jpg", quality=40 if copy == "recompressed" else 85)
    findings = by_file(tmp_path)
    dropped = {f.file for f in findings.values() if f.drop}
    if copy == "recompressed":  # same size: the one that came first stays
        assert len(dropped) == 1 and dropped <= {"copy.jpg", "original.jpg"}
    else:
        assert dropped == {"copy.jpg"}
        assert findings["copy.jpg"].similar_to == "original.jpg"
        assert "same shot" in findings["copy.jpg"].reasons[0]
    assert {f"shot{i}.jpg" for i in range(3)} <= {f.file for f in usable(findings.values())}
