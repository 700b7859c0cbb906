"""Errors shared by the runner, the CLI and the TUI; none of them needs torch to be raised or caught."""

from __future__ import annotations


class StopRequested(Exception):
    """Raised inside a stage after it saved its progress because the user (or SIGTERM) asked to stop."""


class StageError(Exception):
    """A failure the user can act on: `message` says what went wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class JobError(Exception):
    """A job can't be created, started or found; the message is one sentence that says what to do."""
