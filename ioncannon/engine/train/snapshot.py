"""Checkpoint bytes off the training path: reusable (pinned) host copies, and safetensors streamed with their hash."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import torch

_ALIGN = 64
_CHUNK = 64 * 2**20
_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class HostSnapshot:
    """Host copies of one fixed set of tensors, in a single buffer allocated once and refilled at every save.

    With CUDA tensors the buffer is pinned, so the device-to-host copies are queued behind the training step
    instead of stalling it; `ready` is the event a writer waits on before reading the bytes.
    """

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger("ioncannon")
        self._key: tuple[Any, ...] = ()
        self._views: dict[str, torch.Tensor] = {}
        self.pinned = False
        self.ready: torch.cuda.Event | None = None

    @staticmethod
    def _layout(tensors: dict[str, torch.Tensor]) -> tuple[Any, ...]:
        return tuple((n, t.dtype, tuple(t.shape), t.device.type) for n, t in tensors.items())

    def allocate(self, tensors: dict[str, torch.Tensor]) -> None:
        """Make the host buffer for tensors shaped like these (slow for GBs of pinned memory: call it early)."""
        key = self._layout(tensors)
        if key == self._key:
            return
        offsets, total = [], 0
        for t in tensors.values():
            offsets.append(total)
            total += -(-_nbytes(t) // _ALIGN) * _ALIGN
        want_pin = any(t.is_cuda for t in tensors.values())
        buf = None
        if want_pin:
            try:
                buf = torch.empty(total, dtype=torch.uint8, pin_memory=True)
            except RuntimeError as exc:  # not enough lockable memory: pageable copies still beat a disk write
                self.log.warning("could not pin %.1f GiB for checkpoints (%s); copying to pageable memory",
                                 total / 2**30, exc)
        self.pinned = buf is not None
        if buf is None:
            buf = torch.zeros(total, dtype=torch.uint8)  # touched now (in the background), not at the first save
        self._views = {
            name: buf[off:off + _nbytes(t)].view(t.dtype).view(t.shape)
            for (name, t), off in zip(tensors.items(), offsets, strict=True)
        }
        self._key = key

    def take(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Queue copies of `tensors` into the host buffer; read the result only after `wait()`."""
        self.allocate(tensors)
        cuda = False
        with torch.no_grad():
            for name, t in tensors.items():
                cuda = cuda or t.is_cuda
                self._views[name].copy_(t.detach(), non_blocking=t.is_cuda and self.pinned)
        self.ready = None
        if cuda:
            self.ready = torch.cuda.Event()
            self.ready.record()
        return self._views

    def wait(self) -> None:
        if self.ready is not None:
            self.ready.synchronize()


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
                      ) -> tuple[int, str]:
    """Write host tensors as a safetensors file, hashing the bytes on their way out: (bytes written, sha256)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, t in tensors.items():
        n = _nbytes(t)
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    digest = hashlib.sha256()
    written = 0
    with open(path, "wb", buffering=0) as fh:
        pieces: list[memoryview] = [memoryview(struct.pack("<Q", len(head))), memoryview(head)]
        pieces += [memoryview(t.reshape(-1).view(torch.uint8).numpy()) for t in tensors.values()]
        for raw in pieces:
            for i in range(0, len(raw), _CHUNK):
                chunk = raw[i:i + _CHUNK]
                digest.update(chunk)  # hashlib and write both release the GIL: training goes on meanwhile
                while chunk:
                    done = fh.write(chunk) or 0
                    written += done
                    chunk = chunk[done:]
        os.fsync(fh.fileno())
    return written, digest.hexdigest()
