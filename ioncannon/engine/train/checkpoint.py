"""Crash-safe training checkpoints: staged, hashed, published by rename; newest valid one wins; keep K."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ioncannon.engine.train.snapshot import HostSnapshot, write_safetensors
from ioncannon.job.errors import StageError
from ioncannon.job.events import Emit, Message
from ioncannon.job.fsio import (
    SCHEMA_VERSION,
    StateFileError,
    atomic_write_bytes,
    free_bytes,
    fsync_dir,
    read_json,
    write_json,
)
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


def _write_manifest(staging: Path, step: int, entries: dict[str, dict[str, Any]]) -> None:
    # the manifest goes last: a folder without one is a save that never finished
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

    def check_disk(self, step: int, needed: int) -> None:
        """StageError before a save that cannot fit, naming the checkpoint that stays usable."""
        needed += _DISK_SLACK
        free = free_bytes(self.folder)
        if free < needed:
            raise self.disk_full(f"Disk full: saving the step-{step} checkpoint needs {needed / 2**30:.1f} GiB, "
                                 f"only {free / 2**30:.1f} GiB is free.")

    def disk_full(self, what: str) -> StageError:
        """The error for a checkpoint the disk could not hold: `what` happened, which checkpoint stays, what to do."""
        last = self.published()
        kept = f"The checkpoint at step {last[0][0]} is kept." if last else "No earlier checkpoint exists."
        return StageError(f"{what} {kept}", "Free some disk space (old jobs, other checkpoints), then resume: "
                                            "training continues from the last checkpoint.")

    def write(self, step: int, weights: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor],
              state: dict[str, Any]) -> Path:
        """Stream host tensors into a staging folder (hashing as they go), manifest last, then publish by rename;
        prune to `keep` only after the new one is in place."""
        staging = self.folder / f".staging-step_{step:08d}-{os.getpid()}"
        staging.mkdir()
        entries: dict[str, dict[str, Any]] = {}
        for name, tensors in ((WEIGHTS, weights), (OPTIMIZER, optimizer)):
            size, digest = write_safetensors(staging / name, tensors)
            entries[name] = {"sha256": digest, "bytes": size}
        body = (json.dumps({"schema_version": SCHEMA_VERSION, "format": CHECKPOINT_FORMAT, "step": step, **state},
                           indent=2, sort_keys=True) + "\n").encode()
        atomic_write_bytes(staging / STATE, body)
        entries[STATE] = {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
        _write_manifest(staging, step, entries)
        fsync_dir(staging)
        final = self.folder / f"step_{step:08d}"
        if final.exists():  # a re-save of the same step after a resume: replace it
            shutil.rmtree(final)
        os.replace(staging, final)
        fsync_dir(self.folder)
        for _, old in self.published()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def save(self, step: int, weights: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor],
             state: dict[str, Any]) -> Path:
        """A checkpoint written now, in this thread (training uses CheckpointWriter to write in the background)."""
        writer = CheckpointWriter(self)
        writer.submit(step, weights, optimizer, state)
        writer.wait()
        return self.folder / f"step_{step:08d}"

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


class CheckpointWriter:
    """Saves a store's checkpoints in a background thread; exactly one write is in flight at a time.

    `submit` waits for the previous write, queues copies of the tensors into reused host buffers and returns:
    the GPU goes on training while the bytes are hashed and written. A kill -9 mid-write leaves only a staging
    folder, so resume takes the previous checkpoint. Errors of a write surface at the next submit or `wait`.
    """

    def __init__(self, store: CheckpointStore, log: logging.Logger | None = None) -> None:
        self.store = store
        self.log = log or store.log
        self._weights = HostSnapshot(self.log)
        self._optimizer = HostSnapshot(self.log)
        self._thread: threading.Thread | None = None
        self._preparing: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done: list[tuple[int, Path]] = []
        self._lock = threading.Lock()
        self.write_s: list[float] = []

    def prepare(self, weights: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor]) -> None:
        """Allocate the host buffers in the background (pinning GBs takes seconds) while training starts."""
        def allocate() -> None:
            self._weights.allocate(weights)
            self._optimizer.allocate(optimizer)

        self._preparing = threading.Thread(target=allocate, name="checkpoint-buffers", daemon=True)
        self._preparing.start()

    def submit(self, step: int, weights: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor],
               state: dict[str, Any]) -> None:
        self.wait()
        if self._preparing is not None:
            self._preparing.join()
            self._preparing = None
        self.store.folder.mkdir(parents=True, exist_ok=True)
        self.store.clean_staging()
        self.store.check_disk(step, tensor_bytes(weights) + tensor_bytes(optimizer))
        host_weights = self._weights.take(weights)
        host_optimizer = self._optimizer.take(optimizer)

        def write() -> None:
            t = time.perf_counter()
            try:
                self._weights.wait()
                self._optimizer.wait()
                path = self.store.write(step, host_weights, host_optimizer, state)
            except BaseException as exc:  # handed to the training thread, which decides what it means
                self._error = exc
                return
            with self._lock:
                self._done.append((step, path))
                self.write_s.append(round(time.perf_counter() - t, 2))

        self._thread = threading.Thread(target=write, name=f"checkpoint-{step}", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def published(self) -> list[tuple[int, Path]]:
        """Checkpoints published since the last call (for the training thread to announce)."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def wait(self) -> None:
        """Block until the write in flight is published; raise what it failed with (a full disk as StageError)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is None:
            return
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise self.store.disk_full("Disk full while writing a checkpoint.") from error
        raise error

    def close(self) -> None:
        """Wait for the write in flight on the way out of training; a failure of it is logged, not raised."""
        try:
            self.wait()
        except BaseException:
            self.log.warning("the last checkpoint write failed", exc_info=True)
