"""A model hub that accepts connections and never answers (a box behind a black-holing firewall)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


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
