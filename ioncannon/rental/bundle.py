"""One zip of a job's results (collages, images, model, manifest with hashes), sized before it is written."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from ioncannon import __version__
from ioncannon.job.errors import StageError
from ioncannon.job.fsio import StateFileError, free_bytes, open_job_file, read_json, too_deep, write_json
from ioncannon.job.outputs import plan_outputs
from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec, slugify

MODEL_FORMATS: tuple[str, ...] = ("single", "diffusers", "lora")
# The diffusers folder holds the same weights as the single file; most people want one copy home.
DEFAULT_MODEL_FORMATS: tuple[str, ...] = ("single", "lora")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DISK_MARGIN = 64 * 1024**2
MANIFEST_NAME = "manifest.json"
_CHUNK = 4 * 1024**2
_ZIP64_LIMIT = (1 << 31) - 1  # zipfile's own threshold for zip64 fields
_PLACEHOLDER_HASH = "0" * 64  # a sha256 hex digest is always 64 characters, so the manifest's size is known early


class BundleError(Exception):
    """The bundle can't be written; the message says what to do."""


@dataclass(frozen=True)
class BundleEntry:
    """One file going into the archive: where it is, its name inside, its size and what it is."""

    source: Path
    name: str
    size: int
    kind: str  # collage | contact_sheet | image | metadata | model


@dataclass
class BundlePlan:
    """Everything the archive will hold, decided (and sized) before a byte is written."""

    archive: Path
    entries: list[BundleEntry]
    manifest: dict[str, Any]
    images: str
    model_formats: tuple[str, ...]
    archive_bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def content_bytes(self) -> int:
        return sum(e.size for e in self.entries)


# --------------------------------------------------------------------------- starred images and the finish record


def load_starred(paths: JobPaths) -> list[str]:
    """Starred images as paths relative to the job folder (posix), in the order they were starred."""
    try:
        starred = read_json(paths.starred_file).get("starred", [])
    except StateFileError:
        return []
    return [s for s in starred if isinstance(s, str)] if isinstance(starred, list) else []


def save_starred(paths: JobPaths, relative_paths: Iterable[str]) -> None:
    write_json(paths.starred_file, {"starred": list(dict.fromkeys(relative_paths))})


def toggle_star(paths: JobPaths, image: str | Path) -> bool:
    """Star or unstar one image (absolute or job-relative); returns whether it is starred now."""
    rel = _relative(paths, Path(image))
    starred = load_starred(paths)
    if rel in starred:
        starred.remove(rel)
    else:
        starred.append(rel)
    save_starred(paths, starred)
    return rel in starred


def _relative(paths: JobPaths, image: Path) -> str:
    return (image.relative_to(paths.root) if image.is_absolute() else image).as_posix()



# What each kind of bundled file is called, one and many, in the order the summary lists them.
KIND_NAMES: dict[str, tuple[str, str]] = {
    "collage": ("collage", "collages"), "image": ("image", "images"),
    "contact_sheet": ("contact sheet", "contact sheets"),
    "model": ("model file", "model files"), "model_card": ("model card", "model cards"),
    "metadata": ("metadata file", "metadata files"),
}


def bundle_counts(counts: dict[str, int]) -> str:
    """`4 collages, 16 images, 1 contact sheet`: every kind counted, in a plural that agrees."""
    order = [k for k in KIND_NAMES if k in counts] + sorted(k for k in counts if k not in KIND_NAMES)
    parts = []
    for kind in order:
        one, many = KIND_NAMES.get(kind, (kind.replace("_", " "), kind.replace("_", " ") + "s"))
        parts.append(f"{counts[kind]} {one if counts[kind] == 1 else many}")
    return ", ".join(parts)


def read_finish_record(paths: JobPaths) -> dict[str, Any]:
    """What happened at the finish line: the bundle written, download confirmed or declined, the wipe."""
    try:
        return read_json(paths.finish_file)
    except StateFileError:
        return {}


def update_finish_record(paths: JobPaths, **changes: Any) -> dict[str, Any]:
    record = {k: v for k, v in read_finish_record(paths).items() if k != "schema_version"}
    record.update(changes)
    write_json(paths.finish_file, record)
    return record


def record_download(paths: JobPaths, decision: Literal["confirmed", "declined"]) -> None:
    """The user said the download went through, or chose to go without it."""
    update_finish_record(paths, download=decision, download_decided_at=time.time())


def download_decided(paths: JobPaths) -> str | None:
    decision = read_finish_record(paths).get("download")
    return decision if decision in ("confirmed", "declined") else None


# --------------------------------------------------------------------------- planning


def archive_path(paths: JobPaths, spec: JobSpec) -> Path:
    return paths.root / f"{slugify(spec.name)}-results.zip"


def _files_under(folder: Path) -> list[Path]:
    """Regular files under `folder`, symlinks never followed nor packed (a link could lead anywhere on the box)."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    found = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        # Hidden entries are staging folders and partial files, never results.
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = Path(root) / name
            if not name.startswith(".") and stat.S_ISREG(path.lstat().st_mode):
                found.append(path)
    return sorted(found)


def _output_entries(paths: JobPaths, images: str, starred: set[str]) -> list[BundleEntry]:
    entries: list[BundleEntry] = []
    for path in _files_under(paths.outputs):
        rel = path.relative_to(paths.root).as_posix()
        depth = len(path.relative_to(paths.outputs).parts)
        is_image = path.suffix.lower() in IMAGE_SUFFIXES
        if not is_image:
            kind = "metadata"
        elif depth == 1:
            kind = "contact_sheet"
        elif depth == 2:
            kind = "collage"
        else:
            kind = "image"
            if images == "starred" and rel not in starred:
                continue
        entries.append(BundleEntry(path, rel, path.stat().st_size, kind))
    return entries


_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


def model_format_of(paths: JobPaths, path: Path) -> str:
    """Which format a file in trained_models/ belongs to: single, diffusers, lora, or "card".

    A *lora* name is LoRA (file or folder), another folder is a diffusers folder, a loose weights
    file the single-file checkpoint; anything else at the top (the model card) goes with any format.
    """
    top = path.relative_to(paths.trained_models).parts[0]
    is_folder = (paths.trained_models / top).is_dir()
    if "lora" in top.lower():
        return "lora"
    if is_folder:
        return "diffusers"
    return "single" if path.suffix.lower() in _WEIGHT_SUFFIXES else "card"


def _model_entries(paths: JobPaths, formats: tuple[str, ...]) -> list[BundleEntry]:
    entries = []
    for p in _files_under(paths.trained_models):
        fmt = model_format_of(paths, p)
        if fmt in formats or (fmt == "card" and formats):
            entries.append(BundleEntry(p, p.relative_to(paths.root).as_posix(), p.stat().st_size, "model"))
    return entries


def available_model_formats(paths: JobPaths) -> dict[str, int]:
    """Bytes per model format present in trained_models/ (absent formats are left out)."""
    sizes: dict[str, int] = {}
    for p in _files_under(paths.trained_models):
        fmt = model_format_of(paths, p)
        if fmt != "card":
            sizes[fmt] = sizes.get(fmt, 0) + p.stat().st_size
    return sizes


def plan_bundle(
    paths: JobPaths,
    spec: JobSpec,
    images: Literal["all", "starred"] = "all",
    model_formats: Iterable[str] = DEFAULT_MODEL_FORMATS,
) -> BundlePlan:
    """Choose the files and size the archive exactly; nothing is written."""
    from ioncannon.job.lock import runner_pid
    from ioncannon.job.state import read_state

    if runner_pid(paths) is not None:
        # a zip of what is there now would be missing what the job still writes, and look complete
        state = read_state(paths)
        raise BundleError(f"the job is still running ({state.stage or 'starting'}): bundle it once it has finished, "
                          "or `ioncannon stop` it first to bundle what is there")
    formats = tuple(dict.fromkeys(model_formats))
    unknown = [f for f in formats if f not in MODEL_FORMATS]
    if unknown:
        raise BundleError(f"unknown model format {unknown[0]!r}: choose from {', '.join(MODEL_FORMATS)}")
    starred = set(load_starred(paths))
    if images == "starred" and not starred:
        raise BundleError("no image is starred yet: star some while paging the previews, or bundle all images")
    entries = _output_entries(paths, images, starred) + _model_entries(paths, formats)
    if not entries:
        raise BundleError("this job has no results yet: nothing in outputs/ or trained_models/ to bundle")
    names = [e.name for e in entries]
    if MANIFEST_NAME in names:
        raise BundleError(f"outputs hold a file named {MANIFEST_NAME} at the top; rename it and bundle again")
    plan = BundlePlan(
        archive=archive_path(paths, spec),
        entries=entries,
        manifest=_manifest(paths, spec, entries, images, formats),
        images=images,
        model_formats=formats,
    )
    for entry in entries:
        plan.counts[entry.kind] = plan.counts.get(entry.kind, 0) + 1
    plan.archive_bytes = _zip_size(
        [(e.name, e.size) for e in entries] + [(MANIFEST_NAME, len(_manifest_bytes(plan.manifest)))]
    )
    return plan


# --------------------------------------------------------------------------- the manifest


def _public_settings(spec: JobSpec) -> dict[str, Any]:
    settings = spec.to_json()
    # Where the originals sat on this box says nothing useful at home and may name a person.
    settings["photos_dir"] = Path(spec.photos_dir).name
    return settings


def _planned_prompts(paths: JobPaths, spec: JobSpec) -> dict[str, dict[str, Any]]:
    """Prompt, negative prompt and seeds per output folder, from the generator's own (deterministic) plan."""
    try:
        sets = plan_outputs(spec, paths.outputs)
    except (StageError, OSError, ValueError):
        return {}  # the prompt pack changed or broke since: the images still go home, without prompts
    return {
        s.folder.relative_to(paths.root).as_posix(): {
            "keyword": s.keyword, "prompt": s.jobs[0].prompt, "negative_prompt": s.jobs[0].negative,
            "seeds": {j.path.name: j.seed for j in s.jobs if j.path.exists()},
        }
        for s in sets if s.jobs
    }


def _generation_notes(paths: JobPaths, spec: JobSpec) -> list[dict[str, Any]]:
    """Per output folder: its prompt, negative prompt and seeds (the plan, then any JSON left in the folder)."""
    planned = _planned_prompts(paths, spec)
    notes: list[dict[str, Any]] = []
    for folder in sorted(p for p in paths.outputs.glob("*") if p.is_dir() and not p.is_symlink()):
        rel = folder.relative_to(paths.root).as_posix()
        note: dict[str, Any] = {"folder": rel, **planned.get(rel, {})}
        for meta in sorted(folder.glob("*.json")):
            try:  # a note left in the folder: bounded, never through a link, never nested past reason
                data = json.loads(_read_note(meta))
            except (OSError, ValueError, RecursionError):
                continue
            if isinstance(data, dict) and not too_deep(data):
                note.update({k: v for k, v in data.items() if k != "schema_version"})
        notes.append(note)
    return notes


def _read_note(path: Path, limit: int = 1 << 20) -> str:
    fd = open_job_file(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size > limit:
            raise ValueError(f"{path.name} is not a small regular file")
        return fh.read(limit).decode("utf-8")


def _image_notes(entries: list[BundleEntry]) -> dict[str, dict[str, str]]:
    """Prompt and seed the generator wrote into each PNG's text chunks, where it did."""
    from PIL import Image

    notes: dict[str, dict[str, str]] = {}
    for entry in entries:
        if entry.kind != "image" or entry.source.suffix.lower() != ".png":
            continue
        try:
            with Image.open(entry.source) as im:
                info = {
                    k: str(v) for k, v in im.info.items() if k in ("prompt", "negative_prompt", "seed", "parameters")
                }
        except OSError:
            continue
        if info:
            notes[entry.name] = info
    return notes


def _manifest(
    paths: JobPaths, spec: JobSpec, entries: list[BundleEntry], images: str, formats: tuple[str, ...],
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "made_by": f"ioncannon {__version__}",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "job": spec.name,
        "instance_prompt": spec.instance_prompt,
        "class_prompt": spec.class_prompt,
        "images_included": images,
        "model_formats": list(formats),
        "settings": _public_settings(spec),
        "generation": _generation_notes(paths, spec),
        "image_prompts": _image_notes(entries),
        "files": [{"path": e.name, "bytes": e.size, "kind": e.kind, "sha256": _PLACEHOLDER_HASH} for e in entries],
    }


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _zip_size(files: list[tuple[str, int]]) -> int:
    """The exact size zipfile writes for these stored (uncompressed) members, zip64 fields included."""
    total = 0
    central = 0
    for name, size in files:
        n = len(name.encode("utf-8"))
        local_zip64 = size * 1.05 > _ZIP64_LIMIT
        offset = total
        total += 30 + n + (20 if local_zip64 else 0) + size
        extra = (2 if size > _ZIP64_LIMIT else 0) + (1 if offset > _ZIP64_LIMIT else 0)
        central += 46 + n + (4 + 8 * extra if extra else 0)
    end = 22
    if len(files) >= 0xFFFF or total > _ZIP64_LIMIT or central > _ZIP64_LIMIT:
        end += 56 + 20
    return total + central + end


# --------------------------------------------------------------------------- writing


def check_free_space(plan: BundlePlan) -> None:
    free = free_bytes(plan.archive.parent)
    if free < plan.archive_bytes + DISK_MARGIN:
        raise BundleError(
            f"the bundle needs {human_bytes(plan.archive_bytes)} but only {human_bytes(free)} is free here: "
            "bundle only the starred images, leave the diffusers folder out, or wipe the checkpoints first"
        )


def _zip_info(entry_name: str, source: Path | None, size: int) -> zipfile.ZipInfo:
    mtime = source.stat().st_mtime if source is not None else time.time()
    stamp = time.localtime(max(mtime, 315532800 + 86400))  # zip dates start in 1980
    info = zipfile.ZipInfo(entry_name, date_time=stamp[:6])
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    info.external_attr = 0o600 << 16  # unpacked copies stay private, like the job folder they came from
    return info


def _open_member(source: Path, job_root: Path) -> BinaryIO:
    """A planned file, opened without following a symlink and only inside the job folder: one swapped for a link
    after planning is refused, never packed."""
    if not source.resolve().is_relative_to(job_root.resolve()):
        raise BundleError(f"{source} now leads outside the job folder; nothing was kept: run the bundle again")
    try:
        fd = open_job_file(source)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError(f"{source} became a symlink while bundling; nothing was kept: remove it, then "
                              "bundle again") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError(f"{source} is not a regular file any more; nothing was kept: bundle again")
    return os.fdopen(fd, "rb")


def partial_path(paths: JobPaths, spec: JobSpec) -> Path:
    """Where the bundle is written before it is complete (a kill leaves it: the wipe removes it)."""
    archive = archive_path(paths, spec)
    return archive.with_name(f".{archive.name}.partial")


def bundle_is_current(paths: JobPaths, spec: JobSpec) -> bool:
    """Whether the zip exists and is no older than every result in it could be (a zip made mid-job is stale)."""
    archive = archive_path(paths, spec)
    try:
        made = archive.lstat().st_mtime
    except OSError:
        return False
    newest = max((p.lstat().st_mtime for folder in (paths.outputs, paths.trained_models)
                  for p in _files_under(folder)), default=0.0)
    return made >= newest


def write_bundle(
    plan: BundlePlan,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Path:
    """Write the planned archive (hashing every file on the way) and publish it atomically."""
    check_free_space(plan)
    partial = plan.archive.with_name(f".{plan.archive.name}.partial")  # partial_path(), from the plan alone
    manifest = json.loads(json.dumps(plan.manifest))
    done = 0
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for entry, listed in zip(plan.entries, manifest["files"], strict=True):
                digest = hashlib.sha256()
                written = 0
                with (
                    _open_member(entry.source, plan.archive.parent) as src,
                    archive.open(_zip_info(entry.name, entry.source, entry.size), "w") as dst,
                ):
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                        done += len(chunk)
                        written += len(chunk)
                        if progress is not None:
                            progress(done, plan.content_bytes)
                        if should_stop():
                            raise BundleError("bundling was cancelled; nothing was kept")
                listed["sha256"] = digest.hexdigest()
                listed["bytes"] = written
            body = _manifest_bytes(manifest)
            with archive.open(_zip_info(MANIFEST_NAME, None, len(body)), "w") as dst:
                dst.write(body)
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, plan.archive)
    except FileNotFoundError as exc:
        partial.unlink(missing_ok=True)
        raise BundleError(f"{exc.filename} vanished while bundling; run the bundle again") from exc
    except OSError as exc:  # a disk filled up meanwhile, a file became unreadable: one sentence, no half zip
        partial.unlink(missing_ok=True)
        raise BundleError(f"the bundle could not be written ({exc.strerror or exc}); nothing was kept: free "
                          "some space (or fix the file named) and bundle again") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return plan.archive


def read_bundle_manifest(archive: Path) -> dict[str, Any]:
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read(MANIFEST_NAME))
    if not isinstance(manifest, dict):
        raise BundleError(f"{archive.name}: its {MANIFEST_NAME} is not a table; make the bundle again")
    return manifest


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
