"""Photo measurements: perceptual hashes, blur, face box and square crop geometry."""

from __future__ import annotations

import functools
import os
from typing import Any, Literal

import numpy as np
from PIL import Image

CropMode = Literal["face", "centre", "top"]
Box = tuple[int, int, int, int]

# Variance of the Laplacian at training resolution below which a photo looks soft.
# Tuned on the synthetic corpus and the demo set: sharp photos score about 100 or more,
# a 1 px Gaussian blur at 512 px scores about 12, a 2x upscale about 14.
BLUR_THRESHOLD = 25.0
# Both hashes must agree before two photos are called near-duplicates: one alone flags
# different photos that share a plain background.
DHASH_MAX = 10
PHASH_MAX = 10


def _grey(im: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(im.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float64)


def dhash(im: Image.Image) -> int:
    """Difference hash: 64 bits of 'is this pixel brighter than its right neighbour'."""
    g = _grey(im, (9, 8))
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


@functools.lru_cache(maxsize=1)
def _dct_matrix(n: int = 32) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0, :] = np.sqrt(1.0 / n)
    return m


def phash(im: Image.Image) -> int:
    """DCT hash: the 8×8 lowest frequencies of a 32×32 thumbnail, compared with their median."""
    d = _dct_matrix(32)
    coeffs = d @ _grey(im, (32, 32)) @ d.T
    low = coeffs[:8, :8].flatten()
    med = float(np.median(low[1:]))  # the DC term would dominate the median
    return int("".join("1" if c > med else "0" for c in low), 2)


# Same shot or another shot of the same subject? Colour thumbnails compared at the best of a few framings
# (up to 10% cut off each side): on the generated sets in tests/engine/test_photos_duplicates.py resized,
# recompressed and cropped copies stay under 2 (0-255 scale), other shots of the same face on another
# background, size or shirt are 3.6 and up, unrelated photos 35 and up.
SAME_SHOT_DIFF = 2.5
NEAR_SHOT_DIFF = 6.0
_CROP_MARGINS = (0.0, 0.05, 0.10)
_THUMB = 16


def framings(im: Image.Image) -> np.ndarray:
    """16×16 colour thumbnails of the whole photo (first) and of its crops, shape (81, 16, 16, 3)."""
    small = im.convert("RGB")
    small.thumbnail((128, 128), Image.Resampling.BOX)
    w, h = small.size
    thumbs = []
    for left in _CROP_MARGINS:
        for top in _CROP_MARGINS:
            for right in _CROP_MARGINS:
                for bottom in _CROP_MARGINS:
                    box = (int(left * w), int(top * h), w - int(right * w), h - int(bottom * h))
                    # kept as bytes (a quarter of float32): a folder of many photos holds all of these at once
                    thumbs.append(np.asarray(small.crop(box).resize((_THUMB, _THUMB), Image.Resampling.BOX),
                                             dtype=np.uint8))
    # the uncropped frame must come first: shot_distance compares every framing of one with it
    return np.stack(thumbs)


def shot_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How different two photos look at their best-matching framing: near 0 for a resized, recompressed or
    cropped copy of one shot; more for another shot, however alike its subject."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    a_in_b = np.abs(a - b[0]).mean(axis=(1, 2, 3)).min()
    b_in_a = np.abs(b - a[0]).mean(axis=(1, 2, 3)).min()
    return float(min(a_in_b, b_in_a))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_duplicate(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """(dhash, phash) pairs close enough to be the same shot."""
    return hamming(a[0], b[0]) <= DHASH_MAX and hamming(a[1], b[1]) <= PHASH_MAX


def sharpness(im: Image.Image, resolution: int = 512) -> float:
    """Variance of the Laplacian of the centre square, measured at the training resolution."""
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    sq = im.crop((left, top, left + side, top + side)).convert("L")
    g = np.asarray(sq.resize((resolution, resolution), Image.Resampling.BOX), dtype=np.float64)
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


@functools.lru_cache(maxsize=1)
def _cascade() -> Any | None:
    """The frontal-face Haar cascade shipped in opencv-python-headless 4.x, or None."""
    try:
        import cv2
    except ImportError:
        return None
    classifier = getattr(cv2, "CascadeClassifier", None)
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if classifier is None or not data:
        return None  # OpenCV 5 dropped the cascades; we fall back to the centre crop
    path = os.path.join(data, "haarcascade_frontalface_default.xml")
    if not os.path.exists(path):
        return None
    cascade = classifier(path)
    return None if cascade.empty() else cascade


def face_detector_available() -> bool:
    return _cascade() is not None


def find_face(im: Image.Image, scale: float = 1.0) -> Box | None:
    """Largest frontal face as (left, top, width, height) in the original's pixels, or None."""
    cascade = _cascade()
    if cascade is None:
        return None
    import cv2

    # Detection at ~640 px is quick on a CPU and still finds faces 1/10 of the frame.
    work = im.copy()
    work.thumbnail((640, 640), Image.Resampling.BILINEAR)
    factor = scale * im.width / work.width
    grey = cv2.equalizeHist(np.asarray(work.convert("L")))
    min_side = max(24, int(min(work.size) * 0.08))
    faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
    return (round(x * factor), round(y * factor), round(w * factor), round(h * factor))


def crop_box(size: tuple[int, int], mode: CropMode, face: Box | None, resolution: int) -> Box:
    """Square (left, top, right, bottom) inside an image of `size` for the given crop mode."""
    w, h = size
    side = min(w, h)
    if mode == "face" and face is not None:
        fx, fy, fw, fh = face
        # Zoom so the face fills about a third of the frame, never below the training
        # resolution (no needless upscaling) and never past the image.
        side = int(min(side, max(min(side, resolution), fw * 3)))
        cx = fx + fw / 2
        cy = fy + fh * 0.6  # a little below the face centre keeps the chin and shoulders in
        left = int(round(min(max(cx - side / 2, 0), w - side)))
        top = int(round(min(max(cy - side / 2, 0), h - side)))
        return (left, top, left + side, top + side)
    left = (w - side) // 2
    top = 0 if mode == "top" else (h - side) // 2
    return (left, top, left + side, top + side)


def render(im: Image.Image, mode: CropMode, face: Box | None, resolution: int,
           original_size: tuple[int, int] | None = None) -> Image.Image:
    """Crop `im` (possibly a reduced copy of the original) square and resize to `resolution`."""
    size = original_size or im.size
    sx, sy = im.width / size[0], im.height / size[1]
    left, top, right, bottom = crop_box(size, mode, face, resolution)
    box = (left * sx, top * sy, right * sx, bottom * sy)
    out = im.resize((resolution, resolution), Image.Resampling.LANCZOS, box=box,
                    reducing_gap=3.0)
    return Image.frombytes("RGB", out.size, out.convert("RGB").tobytes())
