"""Crash-safe training checkpoints: staged, hashed, published by rename; newest valid one wins; keep K."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ioncannon.engine.weights.files import save_tensors
from ioncannon.job.errors import StageError
from ioncannon.job.events import Emit, Message
from ioncannon.job.fsio import StateFileError, free_bytes, fsync_dir, read_json, write_json
from ioncannon.job.state import CHECKPOINT_MANIFEST, CHECKPOINT_NAME

CHECKPOINT_FORMAT = 1
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
MANIFEST = CHECKPOINT_MANIFEST
_NAME = CHECKPOINT_NAME
_DISK_SLACK = 256 * 2**20


class CheckpointError(Exception):
    """A checkpoint folder is incomplete, damaged or from another run."""


@dataclass
class LoadedCheckpoint:
    step: int
    path: Path
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    state: dict[str, Any]


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every global RNG the process has, split into tensors (safetensors) and plain values (JSON)."""
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.torch_cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    plain = {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
             "python": [py[0], list(py[1]), py[2]]}
    return tensors, plain


def restore_rng(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if "rng.torch_cuda" in tensors and torch.cuda.is_available():
        states = list(tensors["rng.torch_cuda"])
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    name, keys, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = plain["python"]
    random.setstate((version, tuple(internal), gauss_next))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(16 * 2**20):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(staging: Path, step: int, files: list[str]) -> None:
    entries = {
        name: {"sha256": sha256_file(staging / name), "bytes": (staging / name).stat().st_size} for name in files
    }
    write_json(staging / MANIFEST, {"format": CHECKPOINT_FORMAT, "step": step, "files": entries})


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


class CheckpointStore:
    """Checkpoints of one job under `folder`: step_00000200/ with weights, optimizer, state and a manifest."""

    def __init__(self, folder: Path, keep: int = 2, emit: Emit | None = None,
                 log: logging.Logger | None = None) -> None:
        self.folder = Path(folder)
        self.keep = max(1, keep)
        self.emit = emit or (lambda e: None)
        self.log = log or logging.getLogger("ioncannon")

    def published(self) -> list[tuple[int, Path]]:
        """Published checkpoints, newest first (a folder counts only once it has its final name)."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
        return sorted(found, reverse=True)

    def clean_staging(self) -> None:
        """Remove half-written saves left by a kill in the middle of a save."""
        if self.folder.is_dir():
            for p in self.folder.iterdir():
                if p.name.startswith(".staging-"):
                    shutil.rmtree(p, ignore_errors=True)

    def save(self, step: int, weights: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor],
             state: dict[str, Any]) -> Path:
        """Write, fsync, hash, then publish by rename; prune to `keep` only after the new one is in place."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clean_staging()
        needed = tensor_bytes(weights) + tensor_bytes(optimizer) + _DISK_SLACK
        free = free_bytes(self.folder)
        if free < needed:
            last = self.published()
            kept = f"The checkpoint at step {last[0][0]} is kept." if last else "No earlier checkpoint exists."
            raise StageError(
                f"Disk full: saving the step-{step} checkpoint needs {needed / 2**30:.1f} GiB, "
                f"only {free / 2**30:.1f} GiB is free. {kept}",
                "Free some disk space (old jobs, other checkpoints), then resume: training continues from the last "
                "checkpoint.",
            )
        staging = self.folder / f".staging-step_{step:08d}-{os.getpid()}"
        staging.mkdir()
        save_tensors(staging / WEIGHTS, weights)
        save_tensors(staging / OPTIMIZER, optimizer)
        write_json(staging / STATE, {"format": CHECKPOINT_FORMAT, "step": step, **state})
        _write_manifest(staging, step, [WEIGHTS, OPTIMIZER, STATE])
        fsync_dir(staging)
        final = self.folder / f"step_{step:08d}"
        if final.exists():  # a re-save of the same step after a resume: replace it
            shutil.rmtree(final)
        os.replace(staging, final)
        fsync_dir(self.folder)
        for _, old in self.published()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def verify(self, path: Path) -> dict[str, Any]:
        """The manifest, after checking every file's size and sha256; CheckpointError says what is wrong."""
        try:
            manifest = read_json(path / MANIFEST)
        except StateFileError as exc:
            raise CheckpointError(f"its manifest is unusable ({exc})") from exc
        if manifest.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"it has format {manifest.get('format')!r}")
        files = manifest.get("files")
        if not isinstance(files, dict) or not isinstance(manifest.get("step"), int) or not all(
            isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
            for e in files.values()
        ):
            raise CheckpointError("its manifest is damaged (fields of the wrong type)")
        for name, entry in files.items():
            f = path / name
            if not f.is_file():
                raise CheckpointError(f"{name} is missing")
            if f.stat().st_size != entry["bytes"]:
                raise CheckpointError(f"{name} has the wrong size (truncated?)")
            if sha256_file(f) != entry["sha256"]:
                raise CheckpointError(f"{name} does not match its checksum (damaged on disk)")
        if set(manifest.get("files", {})) != {WEIGHTS, OPTIMIZER, STATE}:
            raise CheckpointError("it lacks some of its files")
        return manifest

    def load(self, path: Path) -> LoadedCheckpoint:
        from safetensors.torch import load_file

        manifest = self.verify(path)
        try:
            state = read_json(path / STATE)
            weights = load_file(str(path / WEIGHTS))
            optimizer = load_file(str(path / OPTIMIZER))
        except Exception as exc:
            raise CheckpointError(f"it could not be read ({type(exc).__name__}: {exc})") from exc
        return LoadedCheckpoint(int(manifest["step"]), path, weights, optimizer, state)

    def load_latest(self, accept: Any = None) -> LoadedCheckpoint | None:
        """The newest checkpoint that verifies and `accept(ckpt)` does not reject; warns about each skipped one."""
        for step, path in self.published():
            try:
                ckpt = self.load(path)
                if accept is not None:
                    reason = accept(ckpt)
                    if reason:
                        raise CheckpointError(reason)
                return ckpt
            except CheckpointError as exc:
                self.log.warning("checkpoint %s unusable: %s", path, exc)
                self.emit(Message("warning", f"Checkpoint at step {step} is unusable: {exc}. Trying an older one."))
        return None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
