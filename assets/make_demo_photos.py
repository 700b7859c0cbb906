"""Draw the demo subject "Zephyr" (a made-up teal cartoon face) into assets/demo_photos/."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SKIN = (90, 185, 175)
HAIR = (235, 120, 30)
SEED = 20261125
SIZE = (640, 800)


def draw_face(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float,
              skin: tuple[int, int, int] = SKIN, hair: tuple[int, int, int] = HAIR) -> None:
    """Zephyr's face: dark eye sockets and a bright nose bridge so a Haar face detector finds it."""
    d.ellipse([cx - r, cy - r * 1.3, cx + r, cy + r * 1.3], fill=skin)
    d.chord([cx - r - 6, cy - r * 1.5, cx + r + 6, cy - r * 0.45], 180, 360, fill=hair)
    ey, ex, er = cy - r * 0.2, r * 0.40, r * 0.22
    socket = tuple(max(0, c - 50) for c in skin)
    for s in (-1, 1):
        d.ellipse([cx + s * ex - er * 1.2, ey - er * 0.9, cx + s * ex + er * 1.2, ey + er * 0.8], fill=socket)
        d.rectangle([cx + s * ex - er * 1.2, ey - er * 1.4, cx + s * ex + er * 1.2, ey - er * 0.95],
                    fill=(70, 35, 15))
        d.ellipse([cx + s * ex - er * 0.5, ey - er * 0.45, cx + s * ex + er * 0.5, ey + er * 0.45],
                  fill=(15, 15, 25))
    bridge = tuple(min(255, c + 30) for c in skin)
    d.rectangle([cx - r * 0.08, ey - er * 0.4, cx + r * 0.08, cy + r * 0.3], fill=bridge)
    d.ellipse([cx - r * 0.18, cy + r * 0.22, cx + r * 0.18, cy + r * 0.38], fill=socket)
    d.chord([cx - r * 0.38, cy + r * 0.5, cx + r * 0.38, cy + r * 0.8], 0, 180, fill=(110, 30, 40))
    # The star mark on the right cheek: the detail a trained model should reproduce.
    sx, sy, sr = cx + r * 0.62, cy + r * 0.35, r * 0.12
    star = [(sx + (sr if i % 2 == 0 else sr * 0.45) * math.cos(math.pi / 2 + i * math.pi / 5),
             sy - (sr if i % 2 == 0 else sr * 0.45) * math.sin(math.pi / 2 + i * math.pi / 5))
            for i in range(10)]
    d.polygon(star, fill=(255, 215, 0))


def draw_scene(rng: random.Random, size: tuple[int, int] = SIZE) -> Image.Image:
    """One 'photo': a random background, Zephyr at a random place and scale, a little noise."""
    w, h = size
    top = tuple(rng.randrange(60, 240) for _ in range(3))
    bottom = tuple(rng.randrange(30, 200) for _ in range(3))
    im = Image.linear_gradient("L").resize(size)
    im = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), im)
    d = ImageDraw.Draw(im)
    for _ in range(rng.randrange(3, 9)):  # furniture, windows, trees: anything not the subject
        x0, y0 = rng.randrange(-50, w), rng.randrange(-50, h)
        box = [x0, y0, x0 + rng.randrange(40, 260), y0 + rng.randrange(40, 260)]
        colour = tuple(rng.randrange(0, 256) for _ in range(3))
        (d.ellipse if rng.random() < 0.4 else d.rectangle)(box, fill=colour)
    r = rng.uniform(0.12, 0.26) * w
    cx = rng.uniform(r * 1.2, w - r * 1.2)
    cy = rng.uniform(r * 1.6, h - r * 1.6)
    shirt = tuple(rng.randrange(0, 256) for _ in range(3))
    d.ellipse([cx - r * 1.9, cy + r * 1.15, cx + r * 1.9, cy + r * 4.0], fill=shirt)
    draw_face(d, cx, cy, r)
    im = im.filter(ImageFilter.GaussianBlur(0.5))
    # Sensor-like grain from the seeded generator (Image.effect_noise is not reproducible).
    noise = Image.frombytes("L", size, rng.randbytes(w * h)).convert("RGB")
    return Image.blend(im, noise, rng.uniform(0.035, 0.06))


def _exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def make(out: Path) -> list[Path]:
    """Write the demo set: ten varied photos plus the old notebook's traps."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file():
            old.unlink()
    rng = random.Random(SEED)
    written: list[Path] = []
    for i in range(1, 11):
        im = draw_scene(rng)
        if i == 3:  # upper-case extension: some notebook forks skipped these
            path = out / "IMG_0003.JPG"
            im.save(path, quality=85)
        elif i == 5:  # a PNG with a transparent background (a "cut-out" from a phone app)
            path = out / "zephyr_cutout.png"
            rgba = im.resize((560, 700)).convert("RGBA")
            mask = Image.new("L", rgba.size, 0)
            ImageDraw.Draw(mask).ellipse([30, 20, 530, 690], fill=255)
            rgba.putalpha(mask)
            rgba.save(path, optimize=True)
        elif i == 7:  # a phone photo stored sideways with EXIF orientation 6 (display: rotate 90° cw)
            path = out / "IMG_0007.jpg"
            im.transpose(Image.Transpose.ROTATE_90).save(path, quality=85, exif=_exif_orientation(6))
        else:
            path = out / f"IMG_{i:04d}.jpg"
            im.save(path, quality=85)
        written.append(path)
    junk = out / ".DS_Store"
    junk.write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(rng.randrange(256) for _ in range(1000)))
    placeholder = out / "put your photos here.txt"
    placeholder.write_text("Replace this file with 8-20 photos of your subject.\n")
    return written + [junk, placeholder]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "demo_photos"
    for p in make(target):
        print(p)
