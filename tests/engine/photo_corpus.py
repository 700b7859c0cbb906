"""Build the photo doctor's test corpus from code: every format, trap, junk file and flag."""

from __future__ import annotations

import importlib.util
import io
import random
import struct
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[2]


def demo_module() -> ModuleType:
    """assets/make_demo_photos.py, which draws the synthetic subject the face detector finds."""
    spec = importlib.util.spec_from_file_location("make_demo_photos", ROOT / "assets" / "make_demo_photos.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scene(seed: int, size: tuple[int, int] = (640, 800)) -> Image.Image:
    return demo_module().draw_scene(random.Random(seed), size)


def no_face(seed: int, size: tuple[int, int] = (640, 800)) -> Image.Image:
    """A sharp, textured picture with no face in it."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    return Image.fromarray(arr).resize(size, Image.Resampling.NEAREST)


def exif_with(orientation: int | None = None, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "ioncannon test camera"  # Make
    if orientation is not None:
        exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}
    return exif


def cmyk_icc() -> bytes:
    """A minimal ICC v2 CMYK printer profile (an A2B0 lut8), different enough from Pillow's naive
    conversion that a test can tell which one was used."""
    def s15(x: float) -> bytes:
        return struct.pack(">i", int(round(x * 65536)))

    lut = b"mft1" + b"\0" * 4 + bytes([4, 3, 2, 0])
    lut += b"".join(s15(1.0 if i == j else 0.0) for i in range(3) for j in range(3))
    # Grid corners in C-M-Y-K order (K fastest): lightness falls with ink, a/b follow C and Y.
    grid = b""
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    light = max(0, 240 - 60 * (c + m + y) - 170 * k)
                    grid += bytes([light, 128 - 40 * c + 40 * m, 128 + 50 * y - 30 * c])
    lut += bytes(range(256)) * 4 + grid + bytes(range(256)) * 3
    text = b"ioncannon test CMYK\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78
    wtpt = b"XYZ " + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = [(b"desc", desc), (b"wtpt", wtpt), (b"A2B0", lut), (b"cprt", b"text\0\0\0\0none\0")]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    header = (struct.pack(">I", offset + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"prtrCMYKLab "
              + b"\0" * 12 + b"acspAPPL" + b"\0" * 24 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"lcms" + b"\0" * 44)
    return header + struct.pack(">I", len(tags)) + table + data


def png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims 1.6 gigapixels (decoding it would need gigabytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100_000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def save(im: Image.Image, path: Path, fmt: str, **kw: object) -> Path:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    path.write_bytes(buf.getvalue())
    return path


def good_photos(folder: Path, count: int, start: int = 0) -> list[Path]:
    """`count` distinct, sharp, large-enough JPEG portraits of the synthetic subject."""
    folder.mkdir(parents=True, exist_ok=True)
    return [save(scene(start + i), folder / f"good_{start + i:02d}.jpg", "JPEG", quality=90) for i in range(count)]


def build(folder: Path, outside: Path) -> dict[str, str]:
    """Write the full corpus into `folder`; returns {file name: expected status}."""
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}

    def put(name: str, status: str, im: Image.Image, fmt: str, **kw: object) -> None:
        save(im, folder / name, fmt, **kw)
        expect[name] = status

    # Formats, read by content whatever the name says.
    put("plain.jpg", "ok", scene(1), "JPEG", quality=90)
    put("UPPER.PNG", "ok", scene(2), "PNG")
    put("MiXeD.JpEg", "ok", scene(3), "JPEG", quality=90)
    put("no_extension", "ok", scene(4), "JPEG", quality=90)
    put("png_named.jpg", "ok", scene(5), "PNG")
    put("photo.webp", "ok", scene(6), "WEBP", quality=90)
    put("phone.heic", "ok", scene(7), "HEIF", quality=90)
    put("photo.avif", "ok", scene(8), "AVIF", quality=90)
    put("photo.bmp", "ok", scene(9), "BMP")
    put("photo.tiff", "ok", scene(10), "TIFF", compression="tiff_lzw")
    put("stereo.mpo", "ok", scene(11), "MPO", save_all=True, append_images=[scene(11)])
    put("still.gif", "flagged", scene(12), "GIF")
    put("anim.gif", "flagged", scene(13), "GIF", save_all=True, append_images=[scene(14)], duration=100)
    # Colour modes.
    rgba = scene(15).convert("RGBA")
    mask = Image.new("L", rgba.size, 0)
    ImageDraw.Draw(mask).ellipse([20, 20, 620, 780], fill=255)  # a phone app's "cut-out"
    rgba.putalpha(mask)
    put("alpha.png", "fixed", rgba, "PNG")
    la = scene(16).convert("LA")
    put("grey_alpha.png", "fixed", _half_transparent(la), "PNG")
    pal = scene(17).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    put("palette_transparent.png", "fixed", pal, "PNG", transparency=0)
    put("cmyk_icc.jpg", "fixed", scene(18).convert("CMYK"), "JPEG", quality=90, icc_profile=cmyk_icc())
    put("cmyk_plain.jpg", "fixed", scene(19).convert("CMYK"), "JPEG", quality=90)
    grey16 = (np.asarray(scene(20).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    put("grey16.png", "fixed", Image.fromarray(grey16), "PNG")
    grey12 = (np.asarray(scene(21).convert("L"), dtype=np.uint16) * 16).astype(np.uint16)
    put("grey12.tif", "fixed", Image.fromarray(grey12), "TIFF")
    put("grey.jpg", "fixed", scene(22).convert("L"), "JPEG", quality=90)
    put("rotated6.jpg", "fixed", scene(23).transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90,
        exif=exif_with(6, gps=True))
    # Flags.
    put("dup_a.jpg", "ok", scene(24), "JPEG", quality=92)
    put("dup_b.jpg", "flagged", scene(24).resize((560, 700)), "JPEG", quality=70)
    put("tiny.jpg", "flagged", scene(25, (240, 300)), "JPEG", quality=90)
    put("blurry.jpg", "flagged", scene(26).filter(ImageFilter.GaussianBlur(6)), "JPEG", quality=90)
    # Junk, ignored and listed.
    for name, data in ((".DS_Store", b"\0\0\0\1Bud1" + bytes(200)), ("Thumbs.db", b"\xd0\xcf\x11\xe0" + bytes(60)),
                       ("desktop.ini", b"[.ShellClassInfo]\r\n"), ("._plain.jpg", b"\0\5\26\7" + bytes(80)),
                       ("placeholder.txt", b"put your photos here\n"), ("notes.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
                       ("clip.mp4", b"\0\0\0\x18ftypmp42" + bytes(40))):
        (folder / name).write_bytes(data)
        expect[name] = "ignored"
    for sub in (".ipynb_checkpoints", "__MACOSX", "holiday"):
        (folder / sub).mkdir()
        save(scene(40), folder / sub / "inside.jpg", "JPEG")
        expect[sub + "/"] = "ignored"
    # Rejections.
    (folder / "empty.jpg").write_bytes(b"")
    expect["empty.jpg"] = "rejected"
    whole = (folder / "plain.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    expect["truncated.jpg"] = "rejected"
    (folder / "fake.png").write_bytes(b"this is not a png at all, just words\n" * 4)
    expect["fake.png"] = "rejected"
    (folder / "bomb.png").write_bytes(png_bomb())
    expect["bomb.png"] = "rejected"
    secret = save(scene(41), outside / "secret.jpg", "JPEG")
    (folder / "escape.jpg").symlink_to(secret)
    expect["escape.jpg"] = "rejected"
    (folder / "camera.CR2").write_bytes(b"II*\0\x10\0\0\0CR\2\0" + bytes(100))
    expect["camera.CR2"] = "rejected"
    return expect


def _half_transparent(im: Image.Image) -> Image.Image:
    """Left half fully transparent, right half opaque, so compositing shows."""
    alpha = Image.new("L", im.size, 255)
    ImageDraw.Draw(alpha).rectangle([0, 0, im.width // 2, im.height], fill=0)
    im = im.copy()
    im.putalpha(alpha)
    return im
