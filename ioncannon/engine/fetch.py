"""The fetch stage: download the base model's files through huggingface_hub, resumable, with bytes, rate and ETA."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ioncannon.engine.context import StageContext
from ioncannon.engine.hub_files import (
    HUB_TIMEOUT_S,
    HubProblem,
    disk_check,
    explain,
    is_hub_error,
    local_model,
    model_source,
    plan_from_hub,
    storage_folder,
)
from ioncannon.job.download import FetchPlan, HubFile, hub_cache_dir, rate_of, record_rate, size_text
from ioncannon.job.errors import StageError, StopRequested
from ioncannon.job.events import Message, Progress

WORKERS = 4  # files fetched at once: a CDN serves one stream slower than a few
PROGRESS_EVERY_S = 0.5
RESUME_HINT = ("Then `ioncannon resume` continues from the bytes already on disk (or `ioncannon resume --base-model "
               "ID_OR_PATH` for another model).")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def skip_fetch(ctx: StageContext) -> str:
    """Why nothing needs downloading (a local folder or file, or a model complete in the cache); "" otherwise."""
    spec = ctx.spec
    where = model_source(spec.base_model, spec.family)
    if not where.repo:
        return f"the base model is a local {where.kind}: nothing to download"
    if local_model(spec.base_model, spec.family):
        return f"{where.repo} is complete in the model cache ({hub_cache_dir()}): nothing to download"
    return ""


class _Tally:
    """Bytes moved by every download thread of this run, for the progress line and the measured rate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fetched = 0   # bytes received in this run
        self.on_disk = 0   # bytes that were already there: finished files and the partial files resumed

    def add(self, n: int) -> None:
        with self.lock:
            self.fetched += n


def _bar_class(tally: _Tally) -> type:
    """A tqdm stand-in that huggingface_hub's downloads report into (the bars themselves stay off the terminal)."""

    class Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: float | None = 1) -> None:
            tally.add(int(n or 0))

        def close(self) -> None:
            pass

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

    return Bar


def _download_resumable(repo: str, file: HubFile, tally: _Tally) -> None:
    """Fetch one file into the hub cache, continuing a partial blob that an earlier (killed) run left behind.

    huggingface_hub resumes a dropped connection within one call but starts a new temporary file on each call, so a
    killed download would start from zero; here the partial blob keeps a fixed name (`blobs/<etag>.incomplete`),
    huggingface_hub's own `http_get` continues it with a Range request, and once the blob is whole
    `hf_hub_download` links it into the snapshot as it does its own. Files served through Xet go to
    `hf_hub_download` directly (hf-xet has its own transfer).
    """
    import huggingface_hub as hub
    from huggingface_hub.file_download import http_get, is_xet_available
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    bar = _bar_class(tally)
    meta = hub.get_hf_file_metadata(hub.hf_hub_url(repo, file.path), timeout=HUB_TIMEOUT_S)
    storage = storage_folder(repo)
    blob = storage / "blobs" / str(meta.etag)
    xet = meta.xet_file_data is not None and is_xet_available() and not hub.constants.HF_HUB_DISABLE_XET
    if not blob.exists() and not xet and meta.etag:
        part = blob.with_name(blob.name + ".incomplete")
        lock = storage.parent / ".locks" / storage.name / f"{meta.etag}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        blob.parent.mkdir(parents=True, exist_ok=True)
        with WeakFileLock(str(lock)):
            if not blob.exists():
                have = part.stat().st_size if part.exists() else 0
                if meta.size is not None and have > meta.size:
                    part.unlink()
                    have = 0
                with tally.lock:
                    tally.on_disk += have
                url = str(meta.location)
                headers = build_hf_headers()
                if urlparse(url).netloc != urlparse(hub.hf_hub_url(repo, file.path)).netloc:
                    headers.pop("authorization", None)  # a CDN's signed link must not see the hub token
                with open(part, "ab") as fh:
                    http_get(url, fh, resume_size=have, headers=headers, expected_size=meta.size, tqdm_class=bar)
                    fh.flush()
                    os.fsync(fh.fileno())
                _verify(part, str(meta.etag), file.path, repo)
                os.replace(part, blob)
    already = blob.exists()
    hub.hf_hub_download(repo, file.path, etag_timeout=HUB_TIMEOUT_S, tqdm_class=None if already else bar)


def _verify(part: Path, etag: str, name: str, repo: str) -> None:
    """A large file's ETag is its SHA-256: a partial file damaged by a crash is caught here, not by the loader."""
    if not _SHA256.match(etag):
        return
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        for chunk in iter(lambda: fh.read(8 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != etag:
        part.unlink()
        raise StageError(f"{name} of {repo} arrived damaged (its checksum does not match).",
                         "Resume to download that file again: `ioncannon resume`.")


def check_disk(ctx: StageContext, plan: FetchPlan) -> None:
    """Refuse before the first byte when the download and the job's own files won't fit."""
    problem = disk_check(ctx.spec, ctx.paths.root, plan.bytes_to_fetch)
    if problem:
        raise StageError(problem, "Then resume: `ioncannon resume`.")


def run_fetch(ctx: StageContext) -> None:
    """Download what the family needs of the base model into the hub cache (HF_HOME), with progress events."""
    spec = ctx.spec
    where = model_source(spec.base_model, spec.family)
    try:
        plan = plan_from_hub(where, spec.family)
    except HubProblem as exc:
        if local_model(spec.base_model, spec.family):
            ctx.emit(Message("warning", f"{exc} The copy in the model cache is complete: using it."))
            return
        raise StageError(str(exc), RESUME_HINT) from exc
    files = [f for f in plan.files if f.path not in plan.cached]
    ctx.emit(Message("info", f"base model {plan.repo}: {len(plan.files)} files, {size_text(plan.total_bytes)}"
                             f"{f' ({plan.variant} weights)' if plan.variant else ''}; "
                             f"{size_text(plan.bytes_to_fetch)} to download into {hub_cache_dir()}"))
    check_disk(ctx, plan)
    tally = _Tally()
    tally.on_disk = plan.cached_bytes
    t0 = time.time()
    failure = _download_all(ctx, plan.repo, files, tally, plan.total_bytes)
    seconds = time.time() - t0
    rate = tally.fetched / seconds if seconds > 0 and tally.fetched else None
    if rate and tally.fetched >= 8e6:  # too little to say anything about the line's speed
        record_rate(ctx.shared_cache, rate)
    ctx.log.info("fetch: %d bytes received in %.1f s, %d bytes were already on disk", tally.fetched, seconds,
                 tally.on_disk)
    if failure is not None:
        if isinstance(failure, (StageError, StopRequested)) or not is_hub_error(failure):
            raise failure  # a bug, not the network: the runner logs its traceback
        raise StageError(explain(plan.repo, failure), RESUME_HINT) from failure
    ctx.emit(Message("info", f"downloaded {size_text(tally.fetched)} in {seconds:.0f} s"
                             f"{f' ({size_text(rate)}/s)' if rate else ''}; {size_text(tally.on_disk)} "
                             "were already on disk"))


def _download_all(ctx: StageContext, repo: str, files: list[HubFile], tally: _Tally,
                  total: int) -> BaseException | None:
    """Run the downloads on a few daemon threads (a stop must not wait for a 10 GB file) and report progress."""
    todo: queue.Queue[HubFile] = queue.Queue()
    for f in sorted(files, key=lambda f: -f.size):  # the largest first, so the last minutes are not one stream
        todo.put(f)
    errors: list[BaseException] = []

    def work() -> None:
        while not errors:
            try:
                file = todo.get_nowait()
            except queue.Empty:
                return
            try:
                _download_resumable(repo, file, tally)
            except BaseException as exc:  # handed to the stage's thread, which says it in one sentence
                ctx.log.warning("fetch: %s failed: %r", file.path, exc)
                errors.append(exc)

    threads = [threading.Thread(target=work, daemon=True, name=f"fetch-{i}")
               for i in range(min(WORKERS, len(files)))]
    for t in threads:
        t.start()
    samples: list[tuple[float, int]] = []
    said = (0.0, -1)  # when the last progress event went out, and the bytes it showed
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(PROGRESS_EVERY_S / len(threads))
        if ctx.should_stop():
            return StopRequested()  # the partial files stay: the next run continues them
        now = time.time()
        samples = [*samples[-40:], (now, tally.fetched)]  # the last ~20 s: the rate follows the line's speed
        done = min(tally.on_disk + tally.fetched, total)
        # huggingface_hub hands over 10 MB at a time: a line when that moved (at most one a second), else every 10 s
        if now - said[0] < (1.0 if done != said[1] else 10.0):
            continue
        said = (now, done)
        rate = rate_of(samples)
        eta = (total - done) / rate if rate else None
        ctx.emit(Progress(stage="fetch", done=done, total=total, rate=rate or 0.0, eta_s=eta, label="bytes"))
    if errors:
        return errors[0]
    ctx.emit(Progress(stage="fetch", done=total, total=total, label="bytes"))
    return None
