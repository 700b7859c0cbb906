"""The photo doctor on a generated corpus: every format, trap, junk file, rejection and flag."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageDraw, ImageFilter

from ioncannon.doctor import decode as photo_decode
from ioncannon.doctor.folder import (
    FOLDER_ROW,
    PhotoFinding,
    PhotoFolderError,
    normalise,
    render_crop,
    scan_folder,
    usable,
)
from tests.engine import photo_corpus


def _tree_digest(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under `folder` (not following symlinks): content hash, mode, mtime."""
    out: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = "dir" if p.is_dir() and not p.is_symlink() else (
                os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest())
            out[str(p.relative_to(folder))] = (digest, st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("corpus")
    src = base / "photos"
    expect = photo_corpus.build(src, base / "outside")
    before = _tree_digest(src)
    findings = scan_folder(src)
    out = base / "job" / "training_samples" / "man"
    written = normalise(src, findings, "zwx", "man", out)
    return {"src": src, "expect": expect, "before": before, "findings": findings,
            "written": written, "out": out, "by_file": {f.file: f for f in written}}


def test_every_corpus_file_gets_the_expected_status(corpus: dict) -> None:
    got = {f.file: f.status for f in corpus["findings"] if f.file != FOLDER_ROW}
    assert got == corpus["expect"]
    for f in corpus["findings"]:
        assert f.reasons, f"{f.file} has no reason"
        assert all(isinstance(r, str) and "\n" not in r for r in f.reasons)


def test_formats_are_detected_by_content(corpus: dict) -> None:
    by = corpus["by_file"]
    assert by["UPPER.PNG"].format == "PNG"
    assert by["no_extension"].format == "JPEG"
    assert by["png_named.jpg"].format == "PNG"
    assert by["phone.heic"].format == "HEIF"
    assert by["photo.avif"].format == "AVIF"
    assert by["stereo.mpo"].format == "MPO"
    assert by["photo.tiff"].format == "TIFF"
    assert any("animated (2 frames)" in r for r in by["anim.gif"].reasons)


def test_rejections_say_why(corpus: dict) -> None:
    by = corpus["by_file"]
    assert "0 bytes" in by["empty.jpg"].reasons[0]
    assert "truncated" in by["truncated.jpg"].reasons[0]
    assert "not an image" in by["fake.png"].reasons[0]
    assert "decompression bomb" in by["bomb.png"].reasons[0]
    assert "outside the photo folder" in by["escape.jpg"].reasons[0]
    assert "RAW" in by["camera.CR2"].reasons[0]
    assert "sub-folder" in by["holiday/"].reasons[0]


def test_source_folder_is_byte_for_byte_unchanged(corpus: dict) -> None:
    assert _tree_digest(corpus["src"]) == corpus["before"]


def test_outputs_are_named_numbered_and_private(corpus: dict) -> None:
    out: Path = corpus["out"]
    names = sorted(f.output for f in corpus["written"] if f.output)
    assert names == [f"zwx man_{i:03d}.png" for i in range(1, len(names) + 1)]
    assert sorted(p.name for p in out.iterdir()) == names  # no temp files left behind
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.name.split("_")[0] == "zwx man"  # the notebook's caption rule


def test_usable_findings_are_written_and_others_are_not(corpus: dict) -> None:
    keep = {f.file for f in usable(corpus["written"])}
    assert "dup_b.jpg" not in keep  # the near-duplicate is dropped by default
    for f in corpus["written"]:
        assert (f.output is not None) == (f.file in keep), f.file


def test_outputs_are_clean_square_rgb_without_metadata(corpus: dict) -> None:
    for f in usable(corpus["written"]):
        data = (corpus["out"] / f.output).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (512, 512)
            assert not im.getexif() and "exif" not in im.info and "icc_profile" not in im.info
        assert b"eXIf" not in data and b"Exif" not in data and b"iCCP" not in data
        assert b"ioncannon test camera" not in data


def _px(corpus: dict, file: str) -> np.ndarray:
    return np.asarray(Image.open(corpus["out"] / corpus["by_file"][file].output), dtype=np.int16)


def test_transparency_is_composited_on_neutral_grey(corpus: dict) -> None:
    assert np.abs(_px(corpus, "alpha.png")[2, 2] - 128).max() <= 2  # a corner outside the cut-out
    grey_alpha = _px(corpus, "grey_alpha.png")
    assert np.abs(grey_alpha[256, 3] - 128).max() <= 2  # left half was fully transparent


def test_high_bit_depth_greyscale_is_scaled_not_clipped(corpus: dict) -> None:
    for file, seed in (("grey16.png", 20), ("grey12.tif", 21)):
        arr = _px(corpus, file)
        assert 40 < arr.mean() < 215 and arr.std() > 8, file  # neither all white nor all black
        assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
        decoded = photo_decode.decode(corpus["src"] / file).image
        original = np.asarray(photo_corpus.scene(seed).convert("L").convert("RGB"), dtype=np.int16)
        assert np.abs(np.asarray(decoded, dtype=np.int16) - original).mean() < 2, file


def test_cmyk_uses_the_embedded_icc_profile(corpus: dict) -> None:
    src = corpus["src"] / "cmyk_icc.jpg"
    with Image.open(src) as im:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        via_icc = ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
        naive = im.convert("RGB")
    finding = corpus["by_file"]["cmyk_icc.jpg"]
    assert any("embedded colour profile" in r for r in finding.reasons)
    rendered = np.asarray(render_crop(corpus["src"], finding, "centre", 64), dtype=np.int16)
    for ref in (via_icc, naive):
        side = min(ref.size)
        box = ((ref.width - side) // 2, (ref.height - side) // 2)
        ref_sq = ref.crop(box + (box[0] + side, box[1] + side)).resize((64, 64), Image.Resampling.LANCZOS)
        diff = np.abs(np.asarray(ref_sq, dtype=np.int16) - rendered).mean()
        if ref is via_icc:
            assert diff < 4
        else:
            assert diff > 10  # proves the profile, not Pillow's naive formula, was used


def test_rotated_phone_photo_reports_upright_size(corpus: dict) -> None:
    f = corpus["by_file"]["rotated6.jpg"]
    assert f.size == (640, 800) and f.face_box is not None and f.crop == "face"


def test_face_crop_centres_on_the_face(tmp_path: Path) -> None:
    im = photo_corpus.no_face(7, (1600, 800)).filter(ImageFilter.GaussianBlur(3))
    photo_corpus.demo_module().draw_face(ImageDraw.Draw(im), 1250, 330, 90)
    photo_corpus.save(im, tmp_path / "face_right.jpg", "JPEG", quality=92)
    [f] = [f for f in scan_folder(tmp_path) if f.file == "face_right.jpg"]
    assert f.face_box is not None and f.crop == "face"
    x, y, w, h = f.face_box
    assert 1150 < x + w / 2 < 1350 and 230 < y + h / 2 < 430
    face = np.asarray(render_crop(tmp_path, f, "face", 256), dtype=np.int16)
    centre = np.asarray(render_crop(tmp_path, f, "centre", 256), dtype=np.int16)
    top = np.asarray(render_crop(tmp_path, f, "top", 256), dtype=np.int16)
    skin_rgb = np.array(photo_corpus.demo_module().SKIN)

    def skin(arr: np.ndarray) -> np.ndarray:
        return np.abs(arr - skin_rgb).sum(axis=-1) < 40

    face_skin, centre_skin = skin(face), skin(centre)
    assert face_skin.mean() > 0.04 and face_skin.mean() > 1.5 * centre_skin.mean()
    ys, xs = np.nonzero(face_skin)
    assert abs(xs.mean() - 128) < 26 and abs(ys.mean() - 128) < 40  # the face sits mid-frame
    assert centre_skin.mean() < 0.02  # while the centre crop cuts most of it off
    assert face.shape == centre.shape == top.shape == (256, 256, 3)


def test_plain_picture_without_face_gets_centre_crop(tmp_path: Path) -> None:
    photo_corpus.save(photo_corpus.no_face(3), tmp_path / "pattern.png", "PNG")
    [f] = [f for f in scan_folder(tmp_path) if f.file == "pattern.png"]
    assert f.face_box is None and f.crop == "centre"
    assert any("no face found" in r for r in f.reasons)


def test_normalise_is_idempotent_and_follows_drops(tmp_path: Path) -> None:
    src = tmp_path / "in"
    photo_corpus.good_photos(src, 6)
    out = tmp_path / "out"
    findings = scan_folder(src)
    assert all(f.status == "ok" for f in findings)
    first = normalise(src, findings, "zwx", "dog", out)
    digest1 = {p.name: p.read_bytes() for p in out.iterdir()}
    normalise(src, findings, "zwx", "dog", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == digest1
    assert [f.output for f in first] == [f"zwx dog_{i:03d}.png" for i in range(1, 7)]
    # The user drops one photo and picks a different crop for another: the set follows.
    edited = [replace(f, drop=f.file == "good_02.jpg") for f in findings]
    again = normalise(src, edited, "zwx", "dog", out, crops={"good_00.jpg": "top"})
    assert sorted(p.name for p in out.iterdir()) == [f"zwx dog_{i:03d}.png" for i in range(1, 6)]
    assert next(f for f in again if f.file == "good_02.jpg").output is None
    assert next(f for f in again if f.file == "good_00.jpg").crop == "top"
    assert (out / "zwx dog_001.png").read_bytes() != digest1["zwx dog_001.png"]


def test_count_flags_too_few_and_too_many(tmp_path: Path) -> None:
    few = tmp_path / "few"
    photo_corpus.good_photos(few, 3)
    row = scan_folder(few)[-1]
    assert row.file == FOLDER_ROW and row.status == "flagged" and "only 3 usable photos" in row.reasons[0]
    many = tmp_path / "many"
    many.mkdir()
    for i in range(41):
        photo_corpus.save(photo_corpus.no_face(100 + i, (520, 520)), many / f"p{i:02d}.png", "PNG")
    findings = scan_folder(many)
    assert len(usable(findings)) == 41
    assert findings[-1].file == FOLDER_ROW and "more than 40" in findings[-1].reasons[0]
    ok = tmp_path / "ok"
    photo_corpus.good_photos(ok, 5)
    assert all(f.file != FOLDER_ROW for f in scan_folder(ok))


@pytest.mark.parametrize("kind", ["missing", "file", "unreadable"])
def test_bad_folders_raise_a_message_not_a_traceback(tmp_path: Path, kind: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x"
    if kind == "file":
        target.write_text("hi")
    elif kind == "unreadable":
        target.mkdir()

        def denied(path: object) -> object:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(PhotoFolderError) as err:
        scan_folder(target)
    assert str(tmp_path) in str(err.value) and len(str(err.value).splitlines()) == 1


def test_fifo_and_unreadable_files_are_rejected_without_hanging(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    photo_corpus.save(photo_corpus.scene(1), tmp_path / "locked.jpg", "JPEG")
    real = photo_decode.read_regular

    def fake(path: Path, limit: int | None = None) -> bytes:
        if Path(path).name == "locked.jpg":
            raise PermissionError(13, "Permission denied")
        return real(path, limit)

    monkeypatch.setattr("ioncannon.doctor.folder.read_regular", fake)
    by = {f.file: f for f in scan_folder(tmp_path)}
    assert by["pipe.jpg"].status == "rejected" and "regular file" in by["pipe.jpg"].reasons[0]
    assert by["locked.jpg"].status == "rejected" and "permission denied" in by["locked.jpg"].reasons[0]


def test_header_size_check_stops_bombs_below_pillows_limit(tmp_path: Path) -> None:
    # 12,000² = 144 MP: under Pillow's error threshold, over ours; must not be decoded.
    (tmp_path / "big.png").write_bytes(photo_corpus.png_bomb(12_000, 12_000))
    [f] = scan_folder(tmp_path)[:1]
    assert f.status == "rejected" and "too large to decode safely" in f.reasons[0]


def test_symlink_inside_the_folder_is_followed(tmp_path: Path) -> None:
    photo_corpus.good_photos(tmp_path, 1)
    (tmp_path / "alias.jpg").symlink_to(tmp_path / "good_00.jpg")
    by = {f.file: f for f in scan_folder(tmp_path)}
    assert by["alias.jpg"].format == "JPEG" and by["alias.jpg"].status == "ok"
    # The link and its target are the same shot: one is kept, the other dropped as a duplicate.
    assert by["good_00.jpg"].status == "flagged" and by["good_00.jpg"].drop


def test_to_json_has_the_contract_keys() -> None:
    f = PhotoFinding("a.jpg", "ok", ["fine"], "zwx man_001.png", "JPEG", (640, 800), "face", (1, 2, 3, 4))
    data = f.to_json()
    assert {"file", "status", "reasons", "output"} <= data.keys()
    assert data["size"] == [640, 800] and data["face_box"] == [1, 2, 3, 4]


def test_missing_decoders_and_detector_degrade_with_a_message(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ioncannon.doctor import quality as photo_quality
    photo_corpus.good_photos(tmp_path, 1)
    photo_corpus.save(photo_corpus.scene(3), tmp_path / "phone.heic", "HEIF", quality=80)
    monkeypatch.setattr(photo_decode, "_register_heif", lambda: False)
    monkeypatch.setattr(photo_quality, "_cascade", lambda: None)  # as with OpenCV 5 or no cv2
    by = {f.file: f for f in scan_folder(tmp_path)}
    assert by["phone.heic"].status == "rejected" and "pip install pillow-heif" in by["phone.heic"].reasons[0]
    good = by["good_00.jpg"]
    assert good.status == "ok" and good.crop == "centre" and good.face_box is None
    assert any("face detector unavailable" in r for r in good.reasons)
