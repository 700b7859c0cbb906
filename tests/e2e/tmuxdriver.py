"""A tiny driver for a real terminal: tmux runs a command, keys are sent, the pane is read."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid

from tests.waiting import patience


class Tmux:
    """One tmux server (own socket, so tests never touch the user's tmux) running one session."""

    def __init__(self, width: int = 80, height: int = 24) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed (apt-get install tmux)")
        self.socket = f"ioncannon-test-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check)

    def start(self, session: str, command: str, env: dict[str, str] | None = None) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        shell = f"env {exports} {command}" if exports else command
        self._tmux("new-session", "-d", "-s", session, "-x", str(self.width), "-y", str(self.height), shell)
        self._tmux("set-option", "-t", session, "remain-on-exit", "on", check=False)

    def send(self, session: str, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-t", session, key)
            time.sleep(0.15)

    def type(self, session: str, text: str) -> None:
        self._tmux("send-keys", "-t", session, "-l", text)
        time.sleep(0.15)

    def screen(self, session: str) -> str:
        out = self._tmux("capture-pane", "-p", "-t", session, check=False)
        return out.stdout

    def wait_for(self, session: str, text: str, timeout: float = 30.0) -> str:
        deadline = time.time() + patience(timeout)
        screen = ""
        while time.time() < deadline:
            screen = self.screen(session)
            if text in screen:
                return screen
            time.sleep(0.25)
        raise AssertionError(f"{text!r} did not appear within {patience(timeout):.0f}s; the screen was:\n{screen}")

    def kill_session(self, session: str) -> None:
        self._tmux("kill-session", "-t", session, check=False)

    def close(self) -> None:
        self._tmux("kill-server", check=False)
