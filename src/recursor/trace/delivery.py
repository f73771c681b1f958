"""Sink delivery off the run's threads: a bounded queue drained by one thread, in order.

A sink may be slow (a file on a network disk, an exporter, a terminal redrawing): the run puts
its events in the queue and goes on; one thread hands them to every sink, in the order they
were emitted. :meth:`SinkQueue.flush` waits until everything put so far has been handed over;
:meth:`SinkQueue.close` does the same and stops the thread. The thread also ends after a second
with nothing to deliver (the next event starts another), so a queue nobody closes holds none.

The queue is bounded so that a sink which never keeps up slows the run down (``put`` waits for
room) instead of growing memory without end; at the default bound the run is 10,000 events
ahead before that happens.

A sink that raises is reported once, on the ``recursor.trace`` logger with its traceback, and
keeps getting events; the run never sees the error (a broken sink must not end a run that is
spending money).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from recursor.trace.events import Event

log = logging.getLogger("recursor.trace")

#: what a run hands its events to: any callable taking an event
Sink = Callable[[Event], None]

#: events the queue holds before ``put`` waits for the delivery thread
DEFAULT_BOUND = 10_000
#: seconds the delivery thread waits for an event before it ends (the next event starts one)
IDLE_S = 1.0


@runtime_checkable
class ClosableSink(Protocol):
    """A sink that holds something to push out (``flush``) and to release (``close``).

    The sinks recursor ships are all of this kind; a plain function is a sink too, and then
    neither is called.
    """

    def __call__(self, event: Event) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class SinkQueue:
    """Hands events to ``sinks`` on one thread, started by the first event. Thread-safe."""

    def __init__(self, sinks: Sequence[Sink], *, bound: int = DEFAULT_BOUND) -> None:
        self._sinks = list(sinks)
        self._bound = bound
        self._items: deque[Event] = deque()
        self._cond = threading.Condition()
        self._put = 0  # events put, ever
        self._done = 0  # events handed to every sink, ever
        self._closed = False
        self._thread: threading.Thread | None = None
        #: sinks whose failure was reported (by position: a sink need not be hashable)
        self._reported: set[int] = set()
        #: how many events each sink failed on, by position in ``sinks``
        self.failures = [0] * len(self._sinks)

    def put(self, event: Event) -> None:
        """Queue ``event`` (waits while the queue is full). After close, deliver it here."""
        if not self._sinks:
            return
        with self._cond:
            if self._closed:
                late = True
            else:
                late = False
                while len(self._items) >= self._bound and not self._closed:
                    self._cond.wait()
                self._items.append(event)
                self._put += 1
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._drain, name="recursor-trace-sinks", daemon=True
                    )
                    self._thread.start()
                self._cond.notify_all()
        if late:
            # an event from a thread the run abandoned: deliver it rather than lose it
            self._deliver(event)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event put so far reached the sinks; False if ``timeout`` passed."""
        with self._cond:
            target = self._put
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued, then stop the thread. Idempotent; sinks stay open."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the delivery thread --------------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    if not self._cond.wait(IDLE_S) and not self._items:
                        # idle: end, so a queue nobody closes holds no thread (put starts one)
                        self._thread = None
                        return
                if not self._items:
                    return
                event = self._items.popleft()
                self._cond.notify_all()  # room for a waiting put
            self._deliver(event)
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def _deliver(self, event: Event) -> None:
        for i, sink in enumerate(self._sinks):
            try:
                sink(event)
            except Exception:
                self.failures[i] += 1
                if i not in self._reported:
                    self._reported.add(i)
                    log.exception(
                        "trace sink %r failed on a %s event; the run goes on, and further "
                        "failures of this sink are not reported",
                        sink,
                        event.type,
                    )
