"""The trajectory of a run: typed events, kept in memory and fanned out to sinks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from recursor.trace.events import (
    CellRan,
    Event,
    LimitHit,
    ModelCalled,
    RunFinished,
    RunStarted,
    SubcallMade,
    event_from_dict,
)

__all__ = [
    "CellRan",
    "Event",
    "LimitHit",
    "ModelCalled",
    "RunFinished",
    "RunStarted",
    "Sink",
    "SubcallMade",
    "Trace",
]

Sink = Callable[[Event], None]
E = TypeVar("E", bound=Event)


class Trace:
    """Events of a whole run tree, in the order they happened; thread-safe."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self._events: list[Event] = []
        self._sinks = list(sinks or [])
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            for sink in self._sinks:
                sink(event)

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

    def save(self, path: str | Path) -> Path:
        """Write the events as JSON Lines (one event a line)."""
        p = Path(path)
        with p.open("w", encoding="utf-8") as f:
            for event in self.events:
                f.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        trace = cls()
        with Path(path).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    trace._events.append(event_from_dict(json.loads(line)))
        return trace
