"""Property: any bytes give either a clean RGB image or a typed rejection, never a crash or hang."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ioncannon.doctor.decode import PhotoRejected, decode
from ioncannon.doctor.folder import render_crop, scan_folder

HEADERS = [
    b"", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x1cftypheic", b"\x00\x00\x00\x20ftypavif",
]


def _valid(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


VALID = [_valid(f) for f in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")]

# Random tails after real magic numbers, and real files with random damage: the first reach the
# parsers, the second reach the decoders.
payloads = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda h, t: h + t, st.sampled_from(HEADERS), st.binary(max_size=2048)),
    st.builds(lambda v, i, b: v[:i % len(v)] + b + v[i % len(v) + len(b):],
              st.sampled_from(VALID), st.integers(0, 10_000), st.binary(min_size=1, max_size=64)),
    st.builds(lambda v, n: v[: max(1, n % len(v))], st.sampled_from(VALID), st.integers(1, 10_000)),
)


def _check(result: object, started: float) -> None:
    assert time.monotonic() - started < 5, "decoding took too long"
    if isinstance(result, PhotoRejected):
        assert result.reason and "\n" not in result.reason
        return
    im = result.image  # type: ignore[attr-defined]
    assert isinstance(im, Image.Image) and im.mode == "RGB" and min(im.size) >= 1
    assert not im.info  # clean: no metadata rides along
    im.tobytes()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads)
def test_any_bytes_decode_or_reject(data: bytes) -> None:
    started = time.monotonic()
    try:
        result: object = decode(data, 64)
    except PhotoRejected as exc:
        result = exc
    _check(result, started)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(payloads, st.sampled_from(["x.jpg", "x.png", "x", "x.heic", "x.txt"]))
def test_any_file_gets_a_status_and_usable_ones_render(tmp_path: Path, data: bytes, name: str) -> None:
    folder = tmp_path / f"case{time.monotonic_ns()}"
    folder.mkdir()
    (folder / name).write_bytes(data)
    [f] = [f for f in scan_folder(folder, resolution=64) if f.file == name]
    assert f.status in ("ok", "fixed", "flagged", "rejected", "ignored") and f.reasons
    if f.status in ("ok", "fixed", "flagged"):
        im = render_crop(folder, f, f.crop or "centre", 64)
        assert im.mode == "RGB" and im.size == (64, 64)
    else:
        assert f.output is None


@pytest.mark.parametrize("data", VALID)
def test_the_valid_seeds_really_decode(data: bytes) -> None:
    photo = decode(data, 64)
    assert photo.image.size == (40, 30) and photo.image.getpixel((5, 5))[2] > 150
