"""A sink that keeps the events in a list: for tests, notebooks, and code that reads a run live."""

from __future__ import annotations

import threading

from recursor.trace.events import Event


class MemorySink:
    """Appends every event to :attr:`events`; thread-safe. Closed, it refuses events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self.closed = False

    def __call__(self, event: Event) -> None:
        with self._lock:
            if self.closed:
                raise ValueError("MemorySink is closed")
            self._events.append(event)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def flush(self) -> None:
        """Nothing to push out: the events are in memory as soon as they arrive."""

    def close(self) -> None:
        with self._lock:
            self.closed = True
