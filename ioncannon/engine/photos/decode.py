"""Decode one photo file by content into an upright 8-bit RGB image, or a typed rejection."""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ioncannon.job.limits import MAX_PHOTO_FILE_BYTES

# Our own ceiling, checked from the header before any pixel is decoded, so a crafted file
# cannot make us allocate gigabytes. Pillow's own bomb check still applies on top of it.
MAX_PIXELS = 120_000_000
MAX_SIDE = 30_000
# What one decode may allocate for its pixels (after JPEG's draft reduction), checked from the header: a 48 MP
# phone photo needs ~140 MiB; a 10,950 px square PNG would need 340 MiB, and its conversions three times that.
MAX_DECODE_BYTES = 300 << 20
# A file may hold its pixels twice over (an MPO's second picture, a thumbnail, EXIF) plus this much more;
# anything bigger is padding or junk that a decoder would plough through for seconds or minutes.
FILE_SLACK_BYTES = 16 << 20
# Bigger than any photo a phone or camera writes: rejected from its size alone, before a byte is read.
MAX_FILE_BYTES = MAX_PHOTO_FILE_BYTES
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2,
                    "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3}
# Neutral grey for transparent areas: white or black backgrounds teach the model a studio look.
BACKGROUND = (128, 128, 128)
# Only the formats a phone or camera produces; Pillow's other plugins (TGA, ICO, PCX…) accept
# almost any bytes and would turn junk into "photos". (MPO comes out of the JPEG plugin.)
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
SNIFF_BYTES = 64

_ORIENTATION_WORDS = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped vertically",
    5: "mirrored and rotated 90°",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90°",
    8: "rotated 90° counter-clockwise",
}


class PhotoRejected(Exception):
    """A file that cannot be used, with a one-line reason that says what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class DecodedPhoto:
    """An upright RGB image plus what was done to get it."""

    image: Image.Image          # upright 8-bit RGB, possibly reduced by JPEG draft
    format: str
    size: tuple[int, int]       # upright size of the original, before any draft reduction
    fixes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def sniff(head: bytes) -> str | None:
    """Name the container format from its magic bytes, or None when it is not an image we know."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF"
        return "VIDEO"
    return None


def _register_heif() -> bool:
    """Teach Pillow HEIC/HEIF through pillow-heif when it is installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def missing_codec(kind: str) -> str | None:
    """Say what to install when a sniffed format has no decoder here, else None."""
    if kind == "HEIF" and not _register_heif():
        return "HEIC/HEIF needs pillow-heif: run `pip install pillow-heif`, or convert it to JPEG"
    Image.init()
    if kind == "AVIF" and "AVIF" not in Image.OPEN:
        return "AVIF needs Pillow 11.2 or newer built with AVIF: upgrade Pillow, or convert it to JPEG"
    return None


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """Read a regular file without following it into a FIFO or device (which could hang)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PhotoRejected("not a regular file (a pipe, device or socket): copy the photo in instead")
        chunks: list[bytes] = []
        remaining = limit
        while remaining is None or remaining > 0:
            chunk = os.read(fd, 1 << 20 if remaining is None else min(1 << 20, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            if remaining is not None:
                remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _to_8bit_grey(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit or float greyscale to 8 bits by its real range, not by clipping."""
    arr = np.asarray(im, dtype=np.float64)
    if im.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
        arr = arr * 255.0
    else:
        peak = float(np.nanmax(arr)) if arr.size else 0.0
        if peak > 255:
            # 10/12/14/16-bit data in a 16-bit container: scale by the container's real depth.
            depth = max(8, int(np.ceil(np.log2(peak + 1))))
            arr = arr * (255.0 / (2 ** depth - 1))
    arr = np.nan_to_num(arr, nan=0.0)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")


def _flatten_alpha(im: Image.Image) -> tuple[Image.Image, str | None]:
    """Composite transparency onto neutral grey; report only when something was transparent."""
    rgba = im.convert("RGBA")
    alpha = rgba.getchannel("A")
    lo, _ = alpha.getextrema()
    if lo == 255:
        return rgba.convert("RGB"), None
    base = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    base.alpha_composite(rgba)
    return base.convert("RGB"), "transparent background filled with neutral grey"


def _cmyk_to_rgb(im: Image.Image) -> tuple[Image.Image, str]:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if out is not None:
                return out, "CMYK converted to RGB with its embedded colour profile"
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return im.convert("RGB"), "CMYK converted to RGB (no usable colour profile; colours approximate)"


def _icc_to_srgb(im: Image.Image) -> tuple[Image.Image, str | None]:
    """Convert wide-gamut RGB (e.g. an iPhone's Display P3) to sRGB so colours train true."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im, None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        desc = (ImageCms.getProfileDescription(src) or "").strip()
        if "srgb" in desc.lower():
            return im, None
        out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        if out is None:
            return im, None
        return out, f"colour profile '{desc or 'embedded'}' converted to sRGB"
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im, None


def to_rgb(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """Any Pillow mode to 8-bit RGB, with a note for each change worth telling the user."""
    fixes: list[str] = []
    mode = im.mode
    if mode == "P" and "transparency" in im.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        out, note = _flatten_alpha(im)
        if note:
            fixes.append(note)
        return out, fixes
    if mode == "CMYK":
        out, note = _cmyk_to_rgb(im)
        return out, [note]
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        fixes.append(f"{'16-bit' if mode.startswith('I;16') else 'high bit-depth'} greyscale scaled to 8-bit RGB")
        return _to_8bit_grey(im).convert("RGB"), fixes
    if mode in ("1", "L"):
        return im.convert("RGB"), ["greyscale photo converted to RGB"]
    if mode == "RGB":
        out, note = _icc_to_srgb(im)
        return out, [note] if note else []
    if mode == "P":  # lossless: nothing worth telling the user
        return im.convert("RGB"), []
    return im.convert("RGB"), [f"{mode} colour converted to RGB"]


def _upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def too_big_file(size: int) -> str | None:
    """Why a file of `size` bytes is refused before it is opened, or None."""
    if size > MAX_FILE_BYTES:
        return (f"{size / 1e6:,.0f} MB is more than any phone or camera photo ({MAX_FILE_BYTES // 1_000_000} MB at "
                "most): export a JPEG copy")
    return None


def decode(data: bytes | Path, target: int = 512) -> DecodedPhoto:
    """Decode by content into an upright RGB image at least `target` px on the short side when possible.

    The work is bounded: the file's size and the pixel memory are checked from the header before decoding.
    """
    try:
        file_bytes = len(data) if isinstance(data, bytes) else os.stat(data).st_size
    except OSError as exc:
        raise PhotoRejected(f"cannot read it ({exc.strerror or exc}): copy it again") from exc
    too_big = too_big_file(file_bytes)
    if too_big:
        raise PhotoRejected(too_big)
    source: io.BytesIO | Path = io.BytesIO(data) if isinstance(data, bytes) else data
    _register_heif()
    Image.init()  # Pillow registers most plugins lazily; the format filter below needs them all
    try:
        with warnings.catch_warnings():
            # Pillow warns between its two bomb limits; our own header check decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            im = Image.open(source, formats=[f for f in FORMATS if f in Image.OPEN])
            return _decode_open(im, target, file_bytes)
    except PhotoRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise PhotoRejected("claims more pixels than is safe to decode (a decompression bomb?): "
                            "resize it below 100 megapixels") from exc
    except UnidentifiedImageError as exc:
        raise PhotoRejected("not an image Pillow can read (damaged, or an unsupported format)") from exc
    except MemoryError as exc:
        raise PhotoRejected("too large to decode in memory; resize it below 100 megapixels") from exc
    except OSError as exc:
        text = str(exc)
        if "truncat" in text.lower() or "broken data stream" in text.lower() or "premature" in text.lower():
            raise PhotoRejected("truncated or damaged file: copy it again from the phone/camera") from exc
        raise PhotoRejected(f"could not decode ({text[:80]}): re-export it as JPEG or PNG") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many types on hostile bytes
        raise PhotoRejected(f"damaged file ({type(exc).__name__}): re-export it as JPEG or PNG") from exc


def _pixel_bytes(im: Image.Image) -> int:
    return im.size[0] * im.size[1] * _BYTES_PER_PIXEL.get(im.mode, 4)


def _decode_open(im: Image.Image, target: int, file_bytes: int = 0) -> DecodedPhoto:
    fmt = im.format or "unknown"
    w, h = im.size
    if w <= 0 or h <= 0 or w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
        raise PhotoRejected(
            f"{w}×{h} is too large to decode safely (limit {MAX_PIXELS // 1_000_000} MP): "
            "resize it or export a smaller copy"
        )
    # animations hold many frames (only the first is decoded); an MPO says how many pictures it carries
    frames_claimed = max(1, int(getattr(im, "n_frames", 1) or 1)) if fmt == "MPO" else 1
    if fmt not in ("GIF", "WEBP") and file_bytes > 2 * frames_claimed * _pixel_bytes(im) + FILE_SLACK_BYTES:
        raise PhotoRejected(
            f"the file ({file_bytes / 1e6:,.0f} MB) is far bigger than its {w}×{h} pixels need: it is damaged or "
            "padded with other data; export the photo again as JPEG"
        )
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - broken EXIF must not lose the photo
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    result = DecodedPhoto(image=im, format=fmt, size=_upright_size((w, h), orientation))
    frames = int(getattr(im, "n_frames", 1) or 1)
    if fmt == "MPO":
        result.notes.append("multi-picture (MPO) file: used the main image")
    elif frames > 1 and fmt == "TIFF":
        result.notes.append(f"multi-page TIFF ({frames} pages): used the first page")
    elif frames > 1:
        result.flags.append(f"animated ({frames} frames): used the first frame; a still photo is better")
    elif fmt == "GIF":
        result.flags.append("GIF holds only 256 colours: a JPEG/PNG original trains better")
    if fmt in ("JPEG", "MPO") and im.mode in ("RGB", "L", "CMYK"):
        # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT: the fastest path for big phone
        # photos, and it never goes below the requested size.
        im.draft(im.mode, (target, target))
    if _pixel_bytes(im) > MAX_DECODE_BYTES:  # after the draft: a big JPEG decodes at a fraction of its size
        raise PhotoRejected(
            f"{w}×{h} ({im.mode}) would take {_pixel_bytes(im) >> 20} MiB to decode, over the "
            f"{MAX_DECODE_BYTES >> 20} MiB limit: export a copy of at most 40 megapixels"
        )
    if frames > 1:
        im.seek(0)
    im.load()
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
        result.fixes.append(f"turned upright (EXIF orientation {orientation}: {_ORIENTATION_WORDS[orientation]})")
    rgb, fixes = to_rgb(im)
    result.fixes.extend(fixes)
    # A clean copy: no EXIF, GPS, ICC or text chunks ride along into the training set.
    result.image = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    return result


def is_text(data: bytes) -> bool:
    """True when the bytes look like a text file (the old notebook's placeholder, notes, etc.)."""
    if not data or b"\x00" in data[:4096]:
        return False
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > 4000  # a multi-byte char cut at the sample boundary
    return True
