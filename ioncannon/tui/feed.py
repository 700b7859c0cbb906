"""The mailbox between the event-pump thread and the UI: events pile up, at most one wake-up is pending."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ioncannon.job.events import Event
from ioncannon.job.state import JobState


@dataclass
class FeedBatch:
    """Everything that happened since the UI last looked."""

    events: list[Event] = field(default_factory=list)
    state: JobState | None = None
    alive: bool = False


class JobFeed:
    """Coalesces a fast producer (the pump) for a slower consumer (the screen).

    The pump offers what it read; only the first offer after a take asks for a wake-up, so a
    busy UI gets one message carrying everything instead of a queue of stale ones.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._state: JobState | None = None
        self._alive = False
        self._seen_state: JobState | None = None
        self._seen_alive: bool | None = None
        self._pending = False

    def offer(self, events: list[Event], state: JobState, alive: bool) -> bool:
        """Store news; True when the caller should post a wake-up (news arrived and none is pending)."""
        with self._lock:
            if not events and state == self._seen_state and alive == self._seen_alive:
                return False
            self._events.extend(events)
            self._state, self._alive = state, alive
            self._seen_state, self._seen_alive = state, alive
            if self._pending:
                return False
            self._pending = True
            return True

    def take(self) -> FeedBatch:
        """Everything offered since the last take; clears the pending wake-up."""
        with self._lock:
            batch = FeedBatch(self._events, self._state, self._alive)
            self._events = []
            self._pending = False
            return batch
