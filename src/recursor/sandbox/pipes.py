"""The host's two directions of one worker channel, each bounded and never blocking the host.

:class:`Outbox`: frames to the worker are written by a thread of their own, so the thread that
watches a cell's deadline never sits in a ``writev`` a worker that stopped reading would hold
for good. Its backlog is bounded in bytes; past it, :meth:`Outbox.send` raises ProtocolError
(the worker is not draining its channel and is killed).

:class:`Inbox`: frames from the worker are read and parsed on a thread of their own into a
queue the session takes them from. The queue is bounded in frames and bytes: while it is full
the reader stops reading, the pipe fills and the worker blocks (backpressure, not memory). A
worker that sends more than ``max_idle`` frames while no cell runs is flooding: the reader
reports the channel broken (a ProtocolError the model is told about) and stops.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from recursor.errors import ProtocolError
from recursor.sandbox import wire
from recursor.sandbox.framing import Channel, encode, write_parts

#: ("frame", Frame, its size in bytes) | ("broken", reason, None) | ("eof", None, None) |
#: ("subcall_done", token, SubcallResponse), from the reader thread and the sub-call threads
Event = tuple[str, object, object]

#: frames the inbox holds before the reader stops reading (backpressure)
MAX_QUEUED_FRAMES = 64
#: bytes the inbox holds before the reader stops reading (one frame over it is always let in)
MAX_QUEUED_BYTES = 64 << 20
#: frames a worker may send while no cell runs (a thread model code left behind, calling
#: llm_query) before it counts as a flood
MAX_IDLE_FRAMES = 32
#: bytes waiting to be written to a worker before it counts as not reading its channel
MAX_BACKLOG_BYTES = 64 << 20


class Outbox:
    """Frames to one worker, written in order by a daemon thread; :meth:`close` ends it."""

    def __init__(self, channel: Channel, *, max_backlog: int = MAX_BACKLOG_BYTES) -> None:
        # a descriptor of the writer's own: the session may close the channel while a write
        # is blocked, and the number must not be reused under it
        self._fd = os.dup(channel.write_fd)
        self._max_frame = channel.max_frame
        self._max_backlog = max_backlog
        self._cv = threading.Condition()
        self._frames: deque[list[bytes]] = deque()
        self._backlog = 0
        self._closed = False
        #: why writing stopped (a broken pipe), or None
        self.failed: str | None = None
        threading.Thread(target=self._run, daemon=True, name="recursor-outbox").start()

    def send(self, obj: dict[str, Any]) -> None:
        """Queue one frame; never blocks. ProtocolError when the backlog is over its bound."""
        parts = encode(obj, self._max_frame)
        size = sum(len(p) for p in parts)
        with self._cv:
            if self._closed or self.failed is not None:
                return  # the worker is gone: nobody would read it
            if self._backlog and self._backlog + size > self._max_backlog:
                raise ProtocolError(
                    f"the worker is not reading its channel ({self._backlog:,} bytes wait)"
                )
            self._frames.append(parts)
            self._backlog += size
            self._cv.notify()

    def _next(self) -> list[bytes] | None:
        with self._cv:
            while not self._frames and not self._closed:
                self._cv.wait()
            return None if self._closed else self._frames[0]

    def _run(self) -> None:
        try:
            while (parts := self._next()) is not None:
                try:
                    write_parts(self._fd, parts)
                except OSError as exc:  # the worker died (EPIPE) or its channel was closed
                    with self._cv:
                        self.failed = str(exc)
                    return
                with self._cv:
                    if self._closed:
                        return  # close() dropped the backlog meanwhile
                    self._frames.popleft()
                    self._backlog -= sum(len(p) for p in parts)
        finally:
            os.close(self._fd)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._frames.clear()
            self._cv.notify()


class Inbox:
    """Parsed frames from one worker, plus the session's own events, in one bounded queue."""

    def __init__(
        self,
        channel: Channel,
        *,
        max_frames: int = MAX_QUEUED_FRAMES,
        max_bytes: int = MAX_QUEUED_BYTES,
        max_idle: int = MAX_IDLE_FRAMES,
    ) -> None:
        self._channel = channel
        self._events: queue.Queue[Event] = queue.Queue()
        self._cv = threading.Condition()
        self._max_frames, self._max_bytes, self._max_idle = max_frames, max_bytes, max_idle
        self._count = self._bytes = self._idle = 0
        self._busy = False
        self._stopped = False
        threading.Thread(target=self._run, daemon=True, name="recursor-inbox").start()

    # -- the session's side ---------------------------------------------------------------------
    def busy(self, running: bool) -> None:
        """The session waits for frames (a cell, a start, a get_var) or not (between cells)."""
        with self._cv:
            self._busy = running
            self._idle = 0

    def put(self, event: Event) -> None:
        """An event of the session's own (a sub-call done): never bounded, never blocks."""
        self._events.put(event)

    def get(self, timeout: float | None) -> Event:
        """The next event (queue.Empty after ``timeout`` seconds)."""
        event = self._events.get(timeout=timeout)
        if event[0] == "frame":
            with self._cv:
                self._count -= 1
                self._bytes -= event[2] if isinstance(event[2], int) else 0
                self._cv.notify_all()
        return event

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    # -- the reader thread ----------------------------------------------------------------------
    def _admit(self, size: int) -> bool:
        """Wait for room for a frame of ``size`` bytes; False when stopped or flooded."""
        with self._cv:
            if not self._busy:
                self._idle += 1
                if self._idle > self._max_idle:
                    raise ProtocolError(
                        f"a flood: more than {self._max_idle} frames while no cell was running"
                    )
            while not self._stopped and self._count and self._full(size):
                self._cv.wait()
            if self._stopped:
                return False
            self._count += 1
            self._bytes += size
            return True

    def _full(self, size: int) -> bool:
        return self._count >= self._max_frames or self._bytes + size > self._max_bytes

    def _run(self) -> None:
        self._events.put(self._read())

    def _read(self) -> Event:
        """Read frames into the queue until the stream ends or breaks; the last event."""
        recv: Callable[[], dict[str, Any] | None] = self._channel.recv
        try:
            while (raw := recv()) is not None:
                frame = wire.parse(raw, wire.FROM_WORKER)
                size = self._channel.last_size
                if not self._admit(size):
                    return ("eof", None, None)
                self._events.put(("frame", frame, size))
        except (ProtocolError, OSError) as exc:
            return ("broken", str(exc), None)
        except Exception as exc:  # whatever a hostile frame provokes, the host must hear of it
            return ("broken", f"{type(exc).__name__}: {exc}", None)
        return ("eof", None, None)
