"""Waiting in tests: poll for the event itself; a timeout only guards against a hang, scaled for busy machines."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

# A timeout here is a hang guard, not a speed claim: on a 2-core machine shared with other work a stage can take
# several times as long as on an idle one, so every guard is multiplied by this factor (set it higher if needed).
PATIENCE = float(os.environ.get("IONCANNON_TEST_PATIENCE", "5"))


def patience(seconds: float) -> float:
    """A hang guard of `seconds` on an idle machine, stretched for a busy one."""
    return seconds * PATIENCE


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.time() + patience(timeout)
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {patience(timeout):.0f}s waiting for {what}")
