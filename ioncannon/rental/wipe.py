"""Remove every copy of the subject the product made, keep the class images, and say what was removed."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ioncannon.job.paths import JobPaths
from ioncannon.job.spec import JobSpec
from ioncannon.job.units import count
from ioncannon.rental.bundle import archive_path, human_bytes, partial_path, update_finish_record

NOT_A_SECURE_ERASE = (
    "Deleting files on a rented SSD or container layer is not a secure erase: the blocks can stay on "
    "the provider's disk until something overwrites them. Destroying the instance is what releases them."
)


class WipeError(Exception):
    """The wipe refused to start; the message says why and what to do."""


@dataclass(frozen=True)
class WipeItem:
    """One thing the wipe removes: what it is, where, and how big it was."""

    label: str
    path: str
    bytes: int
    files: int


@dataclass
class WipeReceipt:
    removed: list[WipeItem] = field(default_factory=list)
    failed: list[tuple[WipeItem, str]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    originals: str = ""
    wiped_at: float = field(default_factory=time.time)

    @property
    def total_bytes(self) -> int:
        return sum(item.bytes for item in self.removed)

    def lines(self, relative_to: Path | None = None) -> list[str]:
        """The receipt as plain lines, for the terminal and the finish screen (paths shortened if asked)."""

        def short(path: str) -> str:
            if relative_to is not None and Path(path).is_relative_to(relative_to):
                return str(Path(path).relative_to(relative_to))
            return path

        out = [f"Removed {human_bytes(self.total_bytes)} in {count(len(self.removed), 'place')}:"]
        out += [f"  ✓ {i.label}: {short(i.path)} ({count(i.files, 'file')}, {human_bytes(i.bytes)})"
                for i in self.removed]
        out += [f"  ✗ {i.label}: {short(i.path)} could not be removed: {why}" for i, why in self.failed]
        out += [
            f"Kept: {short(k)}"
            + (" (generic class images, not of your subject)" if Path(k).name == "class_images" else "")
            for k in self.kept
        ]
        if self.originals:
            out.append(self.originals)
        out.append(NOT_A_SECURE_ERASE)
        return out


def _subject_copies(paths: JobPaths, spec: JobSpec, include_results: bool) -> list[tuple[str, Path]]:
    places = [
        ("normalised photos", paths.root / "training_samples"),
        ("latents cache", paths.cache),
        ("checkpoints", paths.checkpoints),
        ("training previews", paths.previews),
        ("trained weights (working copy)", paths.trained),
        # a bundle cut short (a kill, a full disk) holds the subject's images as much as the finished one
        ("unfinished results bundle", partial_path(paths, spec)),
    ]
    if include_results:
        places += [
            ("generated images", paths.outputs),
            ("trained models", paths.trained_models),
            ("results bundle", archive_path(paths, spec)),
            ("starred list", paths.starred_file),
        ]
    return places


def _measure(path: Path) -> tuple[int, int]:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size, 1
    size = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except OSError:
                pass
    return size, files


def plan_wipe(paths: JobPaths, spec: JobSpec, include_results: bool = False) -> list[WipeItem]:
    """What a wipe would remove right now (places that exist), with sizes; nothing is touched."""
    items = []
    for label, path in _subject_copies(paths, spec, include_results):
        if path.exists() or path.is_symlink():
            size, files = _measure(path)
            items.append(WipeItem(label, str(path), size, files))
    return items


def _remove(path: Path) -> None:
    # A symlink is removed itself, never followed: the wipe must not reach outside the job.
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def wipe(paths: JobPaths, spec: JobSpec, include_results: bool = False) -> WipeReceipt:
    """Remove the subject's copies; the receipt lists only what is verifiably gone."""
    if not paths.job_file.is_file():
        raise WipeError(
            f"{paths.root} doesn't look like an ioncannon job (no .ioncannon/job.json); nothing was removed"
        )
    from ioncannon.job.lock import runner_pid

    pid = runner_pid(paths)
    if pid is not None:
        raise WipeError(f"a runner (pid {pid}) is still working on this job: `ioncannon stop` it first, then wipe")
    root = paths.root.resolve()
    receipt = WipeReceipt()
    for item in plan_wipe(paths, spec, include_results):
        path = Path(item.path)
        if not path.is_symlink() and root not in path.resolve().parents:
            receipt.failed.append((item, "it lies outside the job folder"))
            continue
        try:
            _remove(path)
        except OSError as exc:
            receipt.failed.append((item, exc.strerror or str(exc)))
            continue
        if path.exists() or path.is_symlink():
            receipt.failed.append((item, "it is still there after removal"))
        else:
            receipt.removed.append(item)
    classes = paths.root / "class_images"
    if classes.is_dir():
        receipt.kept.append(f"{classes}")
    if not include_results:
        receipt.kept += [f"{p}" for p in (paths.outputs, paths.trained_models, archive_path(paths, spec)) if p.exists()]
    receipt.originals = (
        f"Your original photos in {spec.photos_dir} were never modified or removed; "
        "if you uploaded them to this box, delete them yourself."
    )
    try:
        record_wipe(paths, receipt, include_results)
    except OSError:  # a full disk is when people wipe: the files are gone whether or not the note is written
        pass
    return receipt


def record_wipe(paths: JobPaths, receipt: WipeReceipt, include_results: bool) -> None:
    update_finish_record(
        paths,
        wipe={
            "at": receipt.wiped_at,
            "include_results": include_results,
            "removed": [asdict(i) for i in receipt.removed],
            "failed": [[asdict(i), why] for i, why in receipt.failed],
        },
    )
