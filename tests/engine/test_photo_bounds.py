"""Bounded photo checks: a folder past the stated count is refused before any photo is read, and duplicate
detection compares only photos that can be alike (never every pair), finding exactly what the full comparison finds."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ioncannon.engine.photos import folder as photo_folder
from ioncannon.engine.photos.quality import NEAR_SHOT_DIFF, dhash, framings, near_duplicate, phash, shot_distance
from ioncannon.engine.photos.shots import ShotIndex
from ioncannon.job.limits import MAX_PHOTO_FILES


def _noise_photo(seed: int, side: int = 48) -> Image.Image:
    cells = np.random.default_rng(seed).integers(0, 255, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((side, side * 4 // 3), Image.Resampling.BICUBIC)


def test_a_folder_past_the_photo_bound_is_refused_before_any_photo_is_read(tmp_path: Path) -> None:
    photos = tmp_path / "roll"
    photos.mkdir()
    for i in range(MAX_PHOTO_FILES + 1):
        (photos / f"IMG_{i:05d}.jpg").write_bytes(b"")  # never opened: the count alone refuses the folder
    proc = subprocess.run(
        [sys.executable, "-m", "ioncannon.cli.main", "doctor", str(photos), "--identifier", "zwx", "--class", "dog",
         "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{MAX_PHOTO_FILES + 1:,} files" in proc.stderr and f"at most {MAX_PHOTO_FILES:,}" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_index_misses_no_pair_the_full_comparison_flags() -> None:
    rng = np.random.default_rng(1)
    images = []
    for seed in range(24):
        im = _noise_photo(seed, 96)
        images.append(im)
        w, h = im.size
        # copies and near copies: cropped, brightened, resized
        images.append(im.crop((int(w * rng.uniform(0, 0.08)), 0, w, h - int(h * rng.uniform(0, 0.08)))))
        lift = int(rng.integers(1, 12))
        images.append(Image.eval(im, lambda v, k=lift: min(255, v + k)))
    frames = [framings(im) for im in images]
    hashes = [(dhash(im), phash(im)) for im in images]
    index = ShotIndex(len(images))
    for i in range(len(images)):
        found = set(index.candidates(frames[i], hashes[i]))
        wanted = {j for j in range(i) if shot_distance(frames[j], frames[i]) <= NEAR_SHOT_DIFF
                  or near_duplicate(hashes[j], hashes[i])}
        assert wanted <= found, (i, wanted - found)
        index.put(i, frames[i], hashes[i])
    assert any(shot_distance(a, b) <= NEAR_SHOT_DIFF for a, b in itertools.combinations(frames, 2))


def test_a_big_folder_is_not_compared_pair_by_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 150
    for i in range(n):
        _noise_photo(1000 + i).save(tmp_path / f"IMG_{i:04d}.png")
    calls = []
    real = photo_folder.shot_distance
    monkeypatch.setattr(photo_folder, "shot_distance", lambda a, b: calls.append(1) or real(a, b))
    findings = photo_folder.scan_folder(tmp_path, 64)
    assert len(photo_folder.usable(findings)) == n
    assert len(calls) < n * (n - 1) // 2 // 10  # the old check made all 11,175 comparisons
