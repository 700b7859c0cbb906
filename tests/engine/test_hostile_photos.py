"""Hostile photo folders and names through `ioncannon doctor`: bounded work, one sentence, the folder untouched."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from ioncannon.cli.doctor import main as doctor
from ioncannon.doctor.decode import PhotoRejected, decode
from tests.waiting import patience


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns, p.lstat().st_mode)
            for p in sorted(root.rglob("*"))}


def png_claiming(width: int, height: int) -> bytes:
    """A small, valid-looking PNG whose header claims width × height pixels (its pixel data is tiny)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 80, 40)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (640, 600), (30 * i, 100, 200 - 20 * i)).save(folder / f"IMG_{i}.jpg", quality=90)
    return folder


def run_doctor(folder: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    o, e = io.StringIO(), io.StringIO()
    code = doctor([str(folder), "--identifier", "zwx", "--class", "dog", "--out", str(out), "--json", *extra], o, e)
    return code, o.getvalue(), e.getvalue()


@pytest.mark.parametrize("flag, value, words", [
    ("--class", "..", "class starts with '.'"),
    ("--identifier", "..", "identifier starts with '.'"),
    ("--class", "a\nb", "control characters"),
    ("--identifier", "x" * 500, "characters long"),
])
def test_doctor_refuses_names_that_would_leave_the_folder(tmp_path: Path, photos: Path, flag: str, value: str,
                                                          words: str) -> None:
    before = tree(photos)
    out = tmp_path / "out"
    o, e = io.StringIO(), io.StringIO()
    args = {"--identifier": "zwx", "--class": "dog", flag: value}
    code = doctor([str(photos), "--identifier", args["--identifier"], "--class", args["--class"], "--out", str(out)],
                  o, e)
    assert code == 2 and words in e.getvalue() and "Traceback" not in e.getvalue()
    assert not out.exists() and tree(photos) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_huge_and_padded_files_are_rejected_from_their_size_in_bounded_time(tmp_path: Path, photos: Path) -> None:
    with open(photos / "junk.jpg", "wb") as fh:  # a JPEG header, then 500 MB (sparse: costs no disk)
        fh.write(b"\xff\xd8\xff\xe0" + b"\0" * 60)
        fh.truncate(500_000_000)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    with open(photos / "padded.jpg", "wb") as fh:  # a real 64 px JPEG followed by 40 MB of something else
        fh.write(buf.getvalue())
        fh.truncate(40_000_000)
    (photos / "claims-120mp.png").write_bytes(png_claiming(10_950, 10_950))
    before = tree(photos)
    t = time.time()
    code, out, err = run_doctor(photos, tmp_path / "out")
    seconds = time.time() - t
    assert code == 0, err
    import json

    found = {f["file"]: f for f in json.loads(out)}
    assert found["junk.jpg"]["status"] == "rejected" and "more than any phone" in found["junk.jpg"]["reasons"][0]
    assert found["padded.jpg"]["status"] == "rejected" and "far bigger" in found["padded.jpg"]["reasons"][0]
    assert found["claims-120mp.png"]["status"] == "rejected"
    assert "MiB to decode" in found["claims-120mp.png"]["reasons"][0]
    assert seconds < patience(4), f"the doctor took {seconds:.1f} s"  # it took 24-125 s before the size checks
    assert tree(photos) == before


def test_a_big_jpeg_decodes_within_the_memory_cap_through_its_draft() -> None:
    # 9,000 × 6,000 (54 MP) would need 155 MiB at full size; a 512 px target decodes it at 1/8 scale
    buf = io.BytesIO()
    Image.new("RGB", (9000, 6000), (90, 90, 90)).save(buf, format="JPEG", quality=50)
    photo = decode(buf.getvalue(), 512)
    assert photo.size == (9000, 6000) and min(photo.image.size) >= 512 and photo.image.width < 9000


def test_decode_caps_memory_from_the_header() -> None:
    with pytest.raises(PhotoRejected, match="MiB to decode"):
        decode(png_claiming(12_000, 9_000), 512)  # 108 MP: under the pixel cap, over 300 MiB
