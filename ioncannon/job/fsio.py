"""Atomic, schema-versioned state files and small filesystem helpers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from ioncannon.job.limits import MAX_NESTING

SCHEMA_VERSION = 1
# state files are a few kB; a bigger one is not ours, and reading it whole would cost memory for nothing
MAX_STATE_BYTES = 16 << 20


class StateFileError(Exception):
    """A state file is missing, half-written, or from an unknown schema."""


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """Write via temp file + fsync + os.replace, so readers see old or new, never half; private (0600) by default."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str, mode: int = 0o600) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def write_json(path: str | Path, payload: dict[str, Any], mode: int = 0o600) -> None:
    """Atomically write a JSON object stamped with the current schema version."""
    body = {"schema_version": SCHEMA_VERSION, **payload}
    atomic_write_text(path, json.dumps(body, indent=2, sort_keys=True) + "\n", mode)


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_job_file(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """Open a job's own file never through a symlink (ELOOP instead): a link planted in the job folder must not
    make us read, append to or truncate a file elsewhere."""
    return os.open(path, flags | NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)


def _read_small(path: Path, limit: int) -> bytes:
    """A regular file's bytes; never blocks on a FIFO put in its place, never reads more than `limit`."""
    fd = open_job_file(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StateFileError(f"{path.name} is damaged (not a regular file)")
        if info.st_size > limit:
            raise StateFileError(f"{path.name} is damaged ({info.st_size:,} bytes, far more than it ever holds)")
        return os.read(fd, limit + 1)
    finally:
        os.close(fd)


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether parsed JSON/TOML nests deeper than `limit` (checked without recursion, so any depth is safe)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def read_json(path: str | Path, limit: int = MAX_STATE_BYTES) -> dict[str, Any]:
    """Read a state file written by `write_json`; raise StateFileError with a reason otherwise (never anything else)."""
    path = Path(path)
    try:
        raw = _read_small(path, limit)
    except FileNotFoundError as exc:
        raise StateFileError(f"{path.name} is missing") from exc
    except OSError as exc:
        raise StateFileError(f"{path.name} could not be read: {exc.strerror or exc}") from exc
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StateFileError(f"{path.name} is damaged (not UTF-8 text at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path.name} is damaged (not valid JSON): {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:
        raise StateFileError(f"{path.name} is damaged (not a JSON object the product wrote)") from exc
    if not isinstance(body, dict):
        raise StateFileError(f"{path.name} is damaged (not a JSON object)")
    if too_deep(body):
        raise StateFileError(f"{path.name} is damaged (nested {MAX_NESTING}+ levels deep, never written so)")
    version = body.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StateFileError(
            f"{path.name} has schema version {version!r}; this ioncannon reads {SCHEMA_VERSION}. "
            "Upgrade ioncannon or start a new job."
        )
    return body


def append_line(path: str | Path, line: str) -> None:
    """Append one line and flush it to disk (used for the event log)."""
    # non-blocking open: a FIFO planted in its place fails at once (ENXIO) instead of waiting for a reader forever
    fd = open_job_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{Path(path).name} is not a regular file")
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(line.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def free_bytes(path: str | Path) -> int:
    """Free disk space where `path` (or its nearest existing parent) lives."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def dir_size(path: str | Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
