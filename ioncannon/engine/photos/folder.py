"""The photo doctor: scan a folder read-only, explain every file, write normalised copies."""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from ioncannon.engine.photos.decode import (
    SNIFF_BYTES,
    DecodedPhoto,
    PhotoRejected,
    decode,
    is_text,
    missing_codec,
    read_regular,
    sniff,
    too_big_file,
)
from ioncannon.engine.photos.quality import (
    BLUR_THRESHOLD,
    NEAR_SHOT_DIFF,
    SAME_SHOT_DIFF,
    CropMode,
    dhash,
    face_detector_available,
    find_face,
    framings,
    near_duplicate,
    phash,
    render,
    sharpness,
    shot_distance,
)
from ioncannon.engine.photos.shots import ShotIndex
from ioncannon.job.fsio import atomic_write_bytes
from ioncannon.job.limits import MAX_PHOTO_FILES
from ioncannon.job.workdir import overlaps

Status = Literal["ok", "fixed", "flagged", "rejected", "ignored"]
__all__ = [
    "CropMode", "PhotoFinding", "PhotoFolderError", "Status", "count_finding", "normalise",
    "output_name", "render_crop", "scan_folder", "usable",
]

MIN_PHOTOS = 5
MAX_PHOTOS = 40
FOLDER_ROW = "."  # the `file` of the one folder-level finding (photo count)

JUNK_FILES = {
    ".ds_store": "macOS Finder metadata",
    "thumbs.db": "Windows thumbnail cache",
    "ehthumbs.db": "Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
    "icon\r": "macOS folder icon",
    ".localized": "macOS folder metadata",
}
JUNK_DIRS = {
    ".ipynb_checkpoints": "Jupyter checkpoint folder",
    "__macosx": "macOS zip metadata folder",
    ".git": "git metadata folder",
    ".trash": "trash folder",
    ".trashes": "trash folder",
    "@eadir": "Synology thumbnail folder",
}
SUFFIX_FORMAT = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG", ".webp": "WEBP",
    ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".heic": "HEIF", ".heif": "HEIF",
    ".hif": "HEIF", ".avif": "AVIF", ".mpo": "MPO",
}
IMAGE_SUFFIXES = set(SUFFIX_FORMAT)
RAW_SUFFIXES = {".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf", ".srw", ".pef"}


class PhotoFolderError(Exception):
    """The folder itself cannot be scanned; the message says what to do."""


@dataclass
class PhotoFinding:
    """What the doctor found about one input file, and what it did or will do."""

    file: str
    status: Status
    reasons: list[str] = field(default_factory=list)
    output: str | None = None
    format: str | None = None
    size: tuple[int, int] | None = None
    crop: CropMode | None = None
    face_box: tuple[int, int, int, int] | None = None
    # The suggested fix for a flag, e.g. "drop this photo"; `drop` says whether it is applied.
    # Near-duplicates are dropped by default; the user can flip `drop` from the check screen.
    suggestion: str | None = None
    drop: bool = False
    hashes: tuple[int, int] | None = field(default=None, repr=False)
    framings: Any = field(default=None, repr=False)  # quality.framings(): thumbnails for telling shots apart
    similar_to: str | None = None  # another photo this one looks like (a near shot: shown side by side)
    sharpness: float | None = None

    def to_json(self) -> dict[str, Any]:
        framings, self.framings = self.framings, None  # not copied into the JSON form
        try:
            data = asdict(self)
        finally:
            self.framings = framings
        data.pop("hashes")
        data.pop("framings")
        for key in ("size", "face_box"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


def usable(findings: Iterable[PhotoFinding]) -> list[PhotoFinding]:
    """The photos normalise() will write: decodable, not dropped, in a stable order."""
    keep = [
        f for f in findings
        if f.file != FOLDER_ROW and f.status in ("ok", "fixed", "flagged") and not f.drop
    ]
    return sorted(keep, key=lambda f: (f.file.casefold(), f.file))


def is_dropped(finding: PhotoFinding, excluded: Iterable[str], kept: Iterable[str]) -> bool:
    """The person's choice wins: a file they dropped is out; one the doctor dropped is out unless they kept it."""
    return finding.file in excluded or (finding.drop and finding.file not in kept)


def apply_choices(findings: Iterable[PhotoFinding], excluded: Iterable[str], kept: Iterable[str]) -> list[PhotoFinding]:
    """The findings with the check screen's drop/keep choices applied (what prepare will write)."""
    excluded, kept = set(excluded), set(kept)
    return [replace(f, drop=is_dropped(f, excluded, kept)) for f in findings]


def count_finding(findings: Iterable[PhotoFinding]) -> PhotoFinding | None:
    """A folder-level flag when there are too few or too many usable photos, else None."""
    n = len(usable(findings))
    if n < MIN_PHOTOS:
        why = f"only {n} usable photo{'s' if n != 1 else ''}: DreamBooth needs at least {MIN_PHOTOS}"
        return PhotoFinding(FOLDER_ROW, "flagged", [why], suggestion="add photos (8–20 varied ones work best)")
    if n > MAX_PHOTOS:
        why = f"{n} usable photos: more than {MAX_PHOTOS} slows training without helping"
        return PhotoFinding(FOLDER_ROW, "flagged", [why], suggestion="drop the weakest until 20–40 remain")
    return None


def _open_folder(folder: str | Path) -> tuple[Path, list[os.DirEntry[str]]]:
    root = Path(folder).expanduser()
    if not root.exists():
        raise PhotoFolderError(f"{root} does not exist: check the path (tab completes it)")
    if not root.is_dir():
        raise PhotoFolderError(f"{root} is a file, not a folder: pick the folder that holds the photos")
    try:
        with os.scandir(root) as it:
            entries = list(it)
    except PermissionError as exc:
        raise PhotoFolderError(f"cannot read {root} (permission denied): run `chmod u+rx {root}`") from exc
    except OSError as exc:
        raise PhotoFolderError(f"cannot read {root}: {exc.strerror or exc}") from exc
    if len(entries) > MAX_PHOTO_FILES:
        raise PhotoFolderError(
            f"{root} holds {len(entries):,} files; the check reads at most {MAX_PHOTO_FILES:,}: put the 8-40 best "
            "photos of the subject in a folder of their own and pick that one")
    entries.sort(key=lambda e: (e.name.casefold(), e.name))
    return root.resolve(), entries


def _junk(entry: os.DirEntry[str]) -> PhotoFinding | None:
    name, low = entry.name, entry.name.casefold()
    try:
        is_dir = entry.is_dir(follow_symlinks=False)
    except OSError:
        is_dir = False
    if is_dir:
        what = JUNK_DIRS.get(low)
        if what:
            return PhotoFinding(name + "/", "ignored", [f"{what}, not photos"])
        return PhotoFinding(name + "/", "ignored",
                            ["sub-folder not scanned: move its photos up into this folder to use them"])
    if low in JUNK_FILES:
        return PhotoFinding(name, "ignored", [f"{JUNK_FILES[low]}, not a photo"])
    if name.startswith("._"):
        return PhotoFinding(name, "ignored", ["macOS AppleDouble metadata file, not a photo"])
    return None


def _target(root: Path, entry: os.DirEntry[str]) -> Path:
    """The real file behind an entry; symlinks may point only inside the folder."""
    path = Path(entry.path)
    if not entry.is_symlink():
        return path
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise PhotoRejected("broken symlink: copy the photo itself into the folder") from exc
    if not real.is_relative_to(root):
        raise PhotoRejected("symlink leads outside the photo folder: copy the photo in instead")
    if real.is_dir():
        raise PhotoRejected("symlink to a folder: move its photos up into this folder")
    return real


def _examine(root: Path, entry: os.DirEntry[str], resolution: int) -> PhotoFinding:
    name = entry.name
    finding = PhotoFinding(name, "rejected")
    suffix = Path(name).suffix.casefold()
    try:
        path = _target(root, entry)
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise PhotoRejected("not a regular file (a pipe, device or socket): copy the photo in instead")
        if st.st_size == 0:
            raise PhotoRejected("empty file (0 bytes): copy it again from the phone/camera")
        too_big = too_big_file(st.st_size)
        if too_big:
            raise PhotoRejected(too_big)
        try:
            head = read_regular(path, SNIFF_BYTES)
        except PermissionError as exc:
            raise PhotoRejected(f"cannot read it (permission denied): run `chmod u+r '{name}'`") from exc
        except OSError as exc:
            raise PhotoRejected(f"cannot read it ({exc.strerror or exc}): copy it again") from exc
        kind = sniff(head)
        if suffix in RAW_SUFFIXES:
            raise PhotoRejected("camera RAW file: export it as JPEG from your photo app first")
        if kind == "VIDEO":
            if suffix in IMAGE_SUFFIXES:
                raise PhotoRejected("a video/live-photo container, not a still image: export a still as JPEG")
            return PhotoFinding(name, "ignored", ["video file, not a photo"])
        if kind is None:
            if suffix in IMAGE_SUFFIXES:
                raise PhotoRejected(f"not an image, although its name ends in {Path(name).suffix}")
            what = "text file (a placeholder or note)" if is_text(head) else "not an image"
            return PhotoFinding(name, "ignored", [f"{what}, not a photo"])
        missing = missing_codec(kind)
        if missing:
            raise PhotoRejected(missing)
        photo = decode(path, resolution)
    except PhotoRejected as exc:
        finding.reasons = [exc.reason]
        return finding
    return _assess(finding, photo, suffix, resolution)


def _assess(finding: PhotoFinding, photo: DecodedPhoto, suffix: str, resolution: int) -> PhotoFinding:
    finding.format, finding.size = photo.format, photo.size
    fixes, flags, notes = list(photo.fixes), list(photo.flags), list(photo.notes)
    want = SUFFIX_FORMAT.get(suffix)
    if want is None:
        notes.append(
            f"read as {photo.format} by its content (the name has {'no' if not suffix else 'an odd'} extension)"
        )
    elif want != photo.format and not (want == "JPEG" and photo.format == "MPO"):
        notes.append(f"really a {photo.format}, though named {suffix}: read by content")
    w, h = photo.size
    if min(w, h) < resolution:
        flags.append(f"too small ({w}×{h}): will be upscaled to {resolution} px and look soft")
        finding.suggestion = "use a larger original, or drop it"
    im = photo.image
    scale = w / im.width
    finding.sharpness = round(sharpness(im, resolution), 1)
    if finding.sharpness < BLUR_THRESHOLD:
        flags.append(f"looks blurry (sharpness {finding.sharpness:.0f} < {BLUR_THRESHOLD:.0f})")
        finding.suggestion = finding.suggestion or "drop it, or keep it if it is the only one of this angle"
    if any(f.startswith("animated") or f.startswith("GIF") for f in flags):
        finding.suggestion = finding.suggestion or "use a still JPEG/PNG of this shot"
    finding.hashes = (dhash(im), phash(im))
    finding.framings = framings(im)
    finding.face_box = find_face(im, scale)
    if finding.face_box is not None:
        finding.crop = "face"
        notes.append("square crop centred on the face")
    elif face_detector_available():
        finding.crop = "centre"
        notes.append("no face found: centre crop (try 'top' for a portrait)")
    else:
        finding.crop = "centre"
        notes.append("face detector unavailable (needs opencv-python-headless 4.x): centre crop")
    finding.status = "flagged" if flags else "fixed" if fixes else "ok"
    finding.reasons = flags + fixes + notes
    return finding


def _flag_duplicates(findings: list[PhotoFinding]) -> None:
    """Drop copies of one shot (resized, recompressed, cropped), keeping the larger original; flag near shots.

    Photos of one person are alike by nature: another shot of the same face is only flagged, never dropped,
    and the check screen shows the pair side by side.
    """
    photos = [f for f in usable(findings) if f.hashes is not None and f.framings is not None]
    kept: list[PhotoFinding] = []
    index = ShotIndex(len(photos))  # only photos that may be alike are compared: a big folder stays fast
    for f in photos:
        distances = [(shot_distance(kept[i].framings, f.framings), kept[i])
                     for i in index.candidates(f.framings, f.hashes)]
        same = min(((d, k) for d, k in distances if d <= SAME_SHOT_DIFF), default=None, key=lambda p: p[0])
        if same is None:
            near = min(((d, k) for d, k in distances
                        if d <= NEAR_SHOT_DIFF or (k.hashes is not None and near_duplicate(k.hashes, f.hashes))),
                       default=None, key=lambda p: p[0])
            if near is not None:
                f.status = "flagged"
                f.similar_to = near[1].file
                f.reasons.insert(0, f"looks much like {near[1].file}: kept (d drops it if it adds nothing new)")
            index.put(len(kept), f.framings, f.hashes)
            kept.append(f)
            continue
        twin = same[1]
        loser, winner = f, twin
        if f.size and twin.size and f.size[0] * f.size[1] > twin.size[0] * twin.size[1]:
            loser, winner = twin, f
            slot = kept.index(twin)
            kept[slot] = f
            index.put(slot, f.framings, f.hashes)
        loser.status = "flagged"
        loser.similar_to = winner.file
        loser.reasons.insert(0, f"a copy of {winner.file} (same shot, resized or cropped): dropped (d keeps it)")
        loser.suggestion = f"drop it: {winner.file} shows the same shot"
        loser.drop = True


def scan_folder(folder: str | Path, resolution: int = 512) -> list[PhotoFinding]:
    """Read-only scan: one finding per entry, plus a folder row when the photo count is off."""
    root, entries = _open_folder(folder)
    findings: list[PhotoFinding] = []
    for entry in entries:
        junk = _junk(entry)
        findings.append(junk if junk is not None else _examine(root, entry, resolution))
    _flag_duplicates(findings)
    row = count_finding(findings)
    if row is not None:
        findings.append(row)
    return findings


def output_name(identifier: str, class_name: str, index: int) -> str:
    """The old notebook's name: the caption is everything before the first '_'."""
    return f"{identifier} {class_name}_{index:03d}.png"


def _decode_finding(folder: Path, finding: PhotoFinding, resolution: int) -> DecodedPhoto:
    root = folder.resolve()
    path = (root / finding.file).resolve()
    if not path.is_relative_to(root):
        raise PhotoRejected("path leads outside the photo folder")
    return decode(path, resolution)


def render_crop(folder: str | Path, finding: PhotoFinding, crop: CropMode, resolution: int) -> Image.Image:
    """The square RGB image normalise() would write for this finding with this crop."""
    photo = _decode_finding(Path(folder), finding, resolution)
    return render(photo.image, crop, finding.face_box, resolution, photo.size)


def _write_png(image: Image.Image, target: Path) -> None:
    """Write atomically and private (0600): copies of a person's face stay theirs."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # a working copy: speed over bytes
    atomic_write_bytes(target, buf.getvalue(), mode=0o600)


def normalise(
    folder: str | Path,
    findings: list[PhotoFinding],
    identifier: str,
    class_name: str,
    out_dir: str | Path,
    resolution: int = 512,
    crops: dict[str, CropMode] | None = None,
) -> list[PhotoFinding]:
    """Write `{identifier} {class}_NNN.png` for every usable finding; returns updated findings."""
    if not identifier or "/" in identifier or "/" in class_name or not class_name:
        raise ValueError("identifier and class must be non-empty and contain no '/'")
    src, out = Path(folder), Path(out_dir)
    if overlaps(src, out):  # the last guard before a write: copies never land among (or over) the originals
        raise PhotoFolderError(f"{out} and the photo folder {src} overlap, and the photo folder is never changed: "
                               "write the copies to a folder outside it")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(out, 0o700)
    crops = crops or {}
    result = [replace(f, reasons=list(f.reasons), output=None) for f in findings]
    written: set[str] = set()
    for finding in usable(result):
        crop = crops.get(finding.file) or finding.crop or "centre"
        try:
            photo = _decode_finding(src, finding, resolution)
        except PhotoRejected as exc:  # the file changed or vanished since the scan
            finding.status, finding.reasons, finding.drop = "rejected", [exc.reason], False
            continue
        name = output_name(identifier, class_name, len(written) + 1)
        _write_png(render(photo.image, crop, finding.face_box, resolution, photo.size), out / name)
        finding.crop, finding.output = crop, name
        written.add(name)
    # Remove our own earlier copies that this run did not write (a photo was dropped since),
    # so the folder always matches the table. Only files that follow our naming are touched.
    pattern = re.compile(re.escape(f"{identifier} {class_name}_") + r"\d{3,}\.png")
    for stale in out.iterdir():
        if pattern.fullmatch(stale.name) and stale.name not in written:
            stale.unlink()
    row = count_finding(result)
    result = [f for f in result if f.file != FOLDER_ROW] + ([row] if row else [])
    return result
