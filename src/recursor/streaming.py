"""Streams of a run's events: any completion-like call, watched live, stopped by leaving.

:func:`stream_run` and :func:`astream_run` take a *runner*: a function that performs one run
(a completion, a session's ask) given an extra listener and a cancel scope, and returns its
:class:`~recursor.result.RLMResult`. They yield every event the run emits, from every level of
its tree, as it happens (the listener is called on the emitting thread, so a token reaches the
reader through one queue hand-off), and last a :class:`Completed` carrying the result.

Leaving the loop early (``break``, an exception in the loop body, ``aclose``, the consuming
task being cancelled) sets the scope: the run's cells are interrupted and its worker killed,
queued sub-calls never start, and the stream waits for the run's thread (or task) to end before
it returns, so nothing of the run is left behind.

The sync queue is bounded: a reader that stops reading slows the run down (the emitting thread
waits for room) rather than growing memory; a reader that leaves releases the run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from recursor._cancel import POLL_S, Cancel
from recursor.result import RLMResult
from recursor.trace.delivery import Sink
from recursor.trace.events import Event

__all__ = ["AsyncRunner", "Completed", "Runner", "astream_run", "stream_run"]

#: events a reader may be behind before the run waits for it
STREAM_BOUND = 10_000
#: seconds the stream waits for the run to wind down after its reader left
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Completed(Event):
    """The last event of a stream: the run ended, and this is what it returned."""

    type: ClassVar[str] = "completed"
    result: RLMResult

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "type": self.type,
            "run_id": self.run_id,
            "t": self.t,
            "answer": r.answer,
            "stop_reason": r.stop_reason,
            "iterations": r.iterations,
            "usage": r.usage.to_dict(),
            "elapsed_s": r.elapsed_s,
            "error": None if r.error is None else f"{type(r.error).__name__}: {r.error}",
        }


#: performs one run with an extra listener and a cancel scope (set: stop the run)
Runner = Callable[[Sink, Cancel], RLMResult]
AsyncRunner = Callable[[Sink, Cancel], Awaitable[RLMResult]]


class _Feed:
    """A bounded, thread-safe queue of events that stops taking them once closed."""

    def __init__(self, bound: int) -> None:
        self._items: deque[Event] = deque()
        self._bound = bound
        self._cond = threading.Condition()
        self._closed = False
        self._ended = False

    def put(self, event: Event) -> None:
        with self._cond:
            while len(self._items) >= self._bound and not self._closed:
                self._cond.wait(POLL_S)
            if self._closed:
                return  # the reader left: the run is being stopped, drop it
            self._items.append(event)
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    def get(self) -> Event | None:
        """The next event; None once the run ended and everything was read."""
        with self._cond:
            while not self._items and not self._ended:
                self._cond.wait()
            if not self._items:
                return None
            event = self._items.popleft()
            self._cond.notify_all()
            return event


def stream_run(run: Runner, *, bound: int = STREAM_BOUND) -> Iterator[Event]:
    """The events of ``run`` as it goes (on a thread of its own), then :class:`Completed`.

    An error the run raises is raised here, after the events before it were yielded."""
    feed = _Feed(bound)
    cancel = Cancel()
    box: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            box.append((True, run(feed.put, cancel)))
        except BaseException as exc:
            box.append((False, exc))
        finally:
            feed.end()

    thread = threading.Thread(target=target, name="recursor-stream", daemon=True)
    thread.start()
    finished = False
    try:
        while (event := feed.get()) is not None:
            yield event
        finished = True
    finally:
        if not finished:
            cancel.set("the stream's reader stopped reading")
            feed.close()
        thread.join(None if finished else STOP_TIMEOUT_S)
    ok, value = box[0]
    if not ok:
        raise value
    yield Completed(value.run_id, result=value)


async def astream_run(run: AsyncRunner) -> AsyncIterator[Event]:
    """:func:`stream_run` for async code: ``run`` is awaited as a task of the running loop.

    Events come from threads (cells, the broker's loop) and from the loop itself; each is
    handed over with ``call_soon_threadsafe``. The queue is not bounded: the loop that runs
    the reader also runs the model calls, so a slow reader already slows the run."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    cancel = Cancel()
    stopped = threading.Event()

    def listen(event: Event) -> None:
        if stopped.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads any more
            loop.call_soon_threadsafe(queue.put_nowait, event)

    task = asyncio.ensure_future(run(listen, cancel))
    # after every event the run emitted (they were queued by call_soon_threadsafe before it)
    task.add_done_callback(lambda _t: loop.call_soon(queue.put_nowait, None))
    finished = False
    try:
        while (event := await queue.get()) is not None:
            yield event
        finished = True
    finally:
        if not finished:
            stopped.set()
            cancel.set("the stream's reader stopped reading")
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(_settled(task))
    result = task.result()  # raises the run's error
    yield Completed(result.run_id, result=result)


async def _settled(task: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        await task
