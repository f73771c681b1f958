"""The trajectory of a run: typed events, kept in memory and fanned out to sinks.

Sinks get the events on a thread of their own, in order (:mod:`recursor.trace.delivery`):
a slow sink does not slow the run. ``RLM.completion`` returns once its events were delivered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from recursor.trace.delivery import ClosableSink, Sink, SinkQueue
from recursor.trace.events import (
    BackgroundFinished,
    BackgroundStarted,
    CellRan,
    CellStarted,
    Event,
    HistoryCompacted,
    LimitHit,
    ModelCalled,
    ModelDelta,
    RunFinished,
    RunStarted,
    SubcallMade,
    ToolCalled,
    event_from_dict,
)
from recursor.trace.jsonl import JsonlSink, iter_records, write_events
from recursor.trace.memory import MemorySink

if TYPE_CHECKING:
    from recursor.context import Context

__all__ = [
    "BackgroundFinished",
    "BackgroundStarted",
    "CellRan",
    "CellStarted",
    "ClosableSink",
    "Event",
    "HistoryCompacted",
    "JsonlSink",
    "LimitHit",
    "MemorySink",
    "ModelCalled",
    "ModelDelta",
    "RunFinished",
    "RunStarted",
    "Sink",
    "SubcallMade",
    "ToolCalled",
    "Trace",
]

E = TypeVar("E", bound=Event)


class Trace:
    """Events of a whole run tree, in the order they happened; thread-safe.

    Events reach ``sinks`` through a :class:`~recursor.trace.delivery.SinkQueue`, in the same
    order; :meth:`flush` waits for them, :meth:`close` also stops its thread.
    """

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self._events: list[Event] = []
        self._sinks = list(sinks or [])
        self._lock = threading.Lock()
        self._queue = SinkQueue(self._sinks)
        #: called on the emitting thread, in order, with every event and the live-only ones
        #: (a stream's queue): no delivery thread between a token and its reader
        self._listeners: tuple[Sink, ...] = ()

    def emit(self, event: Event) -> None:
        with self._lock:  # held while queueing: the sinks see the order of this list
            self._events.append(event)
            self._queue.put(event)
            for listener in self._listeners:
                listener(event)

    def emit_live(self, event: Event) -> None:
        """Hand ``event`` to the listeners only: not kept, not written (token deltas, a cell
        starting): what a stream shows as it happens and a trace file has no use for."""
        if not self._listeners:
            return
        with self._lock:
            for listener in self._listeners:
                listener(event)

    @property
    def listening(self) -> bool:
        """Someone reads the run live (so the root's model call is worth streaming)."""
        return bool(self._listeners)

    def listen(self, listener: Sink) -> Callable[[], None]:
        """Call ``listener`` with each event from now on, on the thread that emits it (it must
        not block for long); returns the function that stops it."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def remove() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return remove

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the sinks got every event so far; False if ``timeout`` passed first."""
        return self._queue.flush(timeout)

    def close(self) -> None:
        """Deliver the queued events and stop the delivery thread (the sinks stay open)."""
        self._queue.close()

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self._events)

    def store_context(self, context: Context, depth: int) -> str | None:
        """Offer a run's context to the sinks that store it (``JsonlSink(store_context=True)``).

        Called once per run, outside the lock (a blob may be large); returns the blob's
        sha256 when a sink stored it, for ``RunStarted.context_sha256``.
        """
        key: str | None = None
        for sink in self._sinks:
            store = getattr(sink, "store_context", None)
            if callable(store):
                key = store(context, depth) or key
        return key

    def save(self, path: str | Path) -> Path:
        """Write the events as compact JSON Lines (one event a line, API keys masked)."""
        return write_events(path, self.events)

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """The events of a trace file (context blobs are not loaded; see ``read_context_blob``)."""
        trace = cls()
        trace._events.extend(event_from_dict(record) for record in iter_records(path))
        return trace
