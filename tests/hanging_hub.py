"""Model hubs on 127.0.0.1 for tests: one that never answers (a black-holing firewall), one that serves models."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class HangingHub:
    url: str
    held: list[socket.socket] = field(default_factory=list)  # every connection made to it, kept open


@contextlib.contextmanager
def hanging_hub() -> Iterator[HangingHub]:
    server = socket.create_server(("127.0.0.1", 0))
    hub = HangingHub(f"http://127.0.0.1:{server.getsockname()[1]}")

    def serve() -> None:
        while True:
            try:
                hub.held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield hub
    finally:
        server.close()
        for conn in hub.held:
            conn.close()


# --------------------------------------------------------------------------- a hub that answers


def _sha1_blob(data: bytes) -> str:
    """The git blob id the hub gives small files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubRepo:
    """One model repository the local hub serves: its files (path -> bytes) at one commit."""

    files: dict[str, bytes]
    sha: str
    deny: int = 0           # 401 or 403: refuse every request as the hub does a gated model without access

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if len(data) >= LFS_THRESHOLD else _sha1_blob(data)


LFS_THRESHOLD = 100_000  # files at least this big are "LFS" files: ETag and blob name are their SHA-256


@dataclass
class LocalHub:
    """A Hugging Face Hub on 127.0.0.1 serving the endpoints huggingface_hub calls to list and download a model:
    GET /api/models/{repo}[/revision/{rev}] (with ?blobs=true: sizes and LFS ids), HEAD and GET
    /{repo}/resolve/{rev}/{path} (X-Repo-Commit, ETag, X-Linked-Size/-Etag, Content-Length, Range -> 206)."""

    url: str
    repos: dict[str, HubRepo] = field(default_factory=dict)
    bytes_per_s: float = 0.0            # 0: as fast as it goes; else file bodies are sent at this rate
    sent: dict[str, int] = field(default_factory=dict)   # file path -> body bytes sent
    requests: list[str] = field(default_factory=list)    # "METHOD path [range]" of every request

    def add(self, repo: str, folder: Path, extra: dict[str, bytes] | None = None, deny: int = 0) -> HubRepo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        files.update(extra or {})
        self.repos[repo] = HubRepo(files, hashlib.sha1(repo.encode()).hexdigest(), deny)
        return self.repos[repo]

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())


def _handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet: the test reads hub.requests instead
            pass

        def _error(self, status: int, code: str) -> None:
            body = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self) -> tuple[str, HubRepo, str] | None:
            path = unquote(urlsplit(self.path).path)
            for name, repo in hub.repos.items():
                for prefix, kind in ((f"/api/models/{name}", "api"), (f"/{name}/resolve/", "file")):
                    if path == prefix or path.startswith(prefix + "/") or (kind == "file" and path.startswith(prefix)):
                        if repo.deny:
                            self._error(repo.deny, "GatedRepo")
                            return None
                        return kind, repo, path[len(prefix):]
            self._error(404, "RepoNotFound")
            return None

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            hub.requests.append(f"{self.command} {self.path} {self.headers.get('Range', '')}".strip())
            route = self._route()
            if route is None:
                return
            kind, repo, rest = route
            if kind == "api":
                siblings = []
                for p, data in repo.files.items():
                    entry: dict[str, object] = {"rfilename": p, "size": len(data), "blobId": _sha1_blob(data)}
                    if len(data) >= LFS_THRESHOLD:
                        entry["lfs"] = {"size": len(data), "sha256": repo.etag(p), "pointerSize": 134}
                    siblings.append(entry)
                payload = json.dumps({"id": [n for n, r in hub.repos.items() if r is repo][0], "sha": repo.sha,
                                      "private": False, "gated": False, "siblings": siblings}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)
                return
            _revision, _, file = rest.partition("/")
            if file not in repo.files:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", repo.sha)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = repo.files[file]
            start = 0
            match = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match and int(match[1]) < len(data):
                start = int(match[1])
            etag = repo.etag(file)
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", repo.sha)
            self.send_header("ETag", f'"{etag}"')
            if len(data) >= LFS_THRESHOLD:
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if not body:
                return
            chunk = 16384
            for at in range(start, len(data), chunk):
                piece = data[at:at + chunk]
                try:
                    self.wfile.write(piece)
                except OSError:  # the client went away (killed): what it got is counted
                    return
                hub.sent[file] = hub.sent.get(file, 0) + len(piece)
                if hub.bytes_per_s:
                    time.sleep(len(piece) / hub.bytes_per_s)

    return Handler


@contextlib.contextmanager
def local_hub() -> Iterator[LocalHub]:
    """A LocalHub on a free port of 127.0.0.1, served from a thread for the test's duration."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    hub = LocalHub(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(hub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
