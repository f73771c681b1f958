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

Both queues are bounded, so a reader that falls behind never lets events pile up without limit.
The sync one slows the run down (the emitting thread waits for room); a reader that leaves
releases the run at once. The async one cannot make the event loop wait for a reader that runs
on that same loop, so when it is full it makes room by giving up token deltas (merging a delta
into the one before it of the same call, else dropping the oldest delta; ``Completed`` says how
many were dropped), and a thread emitting any other event waits for room. Events other than
:class:`~recursor.trace.events.ModelDelta` (cells, sub-calls, limit hits, the end) are never
dropped: only the loop itself may, with every delta gone, go past the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from recursor._cancel import POLL_S, Cancel
from recursor.result import RLMResult
from recursor.trace.delivery import Sink
from recursor.trace.events import Event, ModelDelta

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
    #: token deltas a slow reader of :func:`astream_run` missed (dropped to bound the queue)
    dropped_deltas: int = 0

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
            "dropped_deltas": self.dropped_deltas,
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


class _AsyncFeed:
    """The bounded queue of :func:`astream_run`: filled from any thread, read on ``loop``.

    When full: a :class:`ModelDelta` is merged into the delta at the tail when that is the same
    call's (no text lost), else the oldest queued delta is dropped to make room; any other
    event first drops the oldest delta too; with no delta left to drop, an event from another
    thread waits for the reader, and one from the loop (which must not wait for its own reader)
    goes in past the bound.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, bound: int) -> None:
        if bound < 1:
            raise ValueError(f"bound must be at least 1, got {bound}")
        self._loop = loop
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self._bound = bound
        self._items: deque[Event] = deque()
        self._cond = threading.Condition()
        self._ready = asyncio.Event()  # touched on the loop's thread only
        self._closed = False
        self._ended = False
        self.dropped = 0
        #: the most events it held at once (what the tests check)
        self.peak = 0

    def put(self, event: Event) -> None:
        on_loop = threading.get_ident() == self._loop_thread
        with self._cond:
            while len(self._items) >= self._bound and not self._closed:
                if isinstance(event, ModelDelta) and self._merge(event):
                    return  # the reader is woken by the tail's first put already
                if self._drop_oldest_delta() or on_loop:
                    break
                self._cond.wait(POLL_S)
            if self._closed:
                return  # the reader left: the run is being stopped
            self._items.append(event)
            self.peak = max(self.peak, len(self._items))
        self._wake(on_loop)

    def _merge(self, event: ModelDelta) -> bool:
        tail = self._items[-1] if self._items else None
        if isinstance(tail, ModelDelta) and (tail.run_id, tail.iteration) == (
            event.run_id,
            event.iteration,
        ):
            self._items[-1] = ModelDelta(
                tail.run_id, tail.iteration, tail.text + event.text, t=tail.t
            )
            return True
        return False

    def _drop_oldest_delta(self) -> bool:
        for i, item in enumerate(self._items):
            if isinstance(item, ModelDelta):
                del self._items[i]
                self.dropped += 1
                return True
        return False

    def _wake(self, on_loop: bool) -> None:
        if on_loop:
            self._ready.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody reads any more
            self._loop.call_soon_threadsafe(self._ready.set)

    def end(self) -> None:
        """No more events (called on the loop's thread)."""
        with self._cond:
            self._ended = True
        self._ready.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    async def get(self) -> Event | None:
        """The next event; None once the run ended and everything was read."""
        while True:
            with self._cond:
                if self._items:
                    event = self._items.popleft()
                    self._cond.notify_all()
                    return event
                if self._ended:
                    return None
                # cleared under the lock: a put after this check sets it again
                self._ready.clear()
            await self._ready.wait()


async def astream_run(
    run: AsyncRunner, *, bound: int = STREAM_BOUND
) -> AsyncGenerator[Event, None]:
    """:func:`stream_run` for async code: ``run`` is awaited as a task of the running loop.

    Events come from threads (cells, the broker's loop, a blocking model's call) and from the
    loop itself; see the module for how the queue stays within ``bound``."""
    loop = asyncio.get_running_loop()
    feed = _AsyncFeed(loop, bound)
    cancel = Cancel()
    task = asyncio.ensure_future(run(feed.put, cancel))
    # Events put from threads before the run returned are in the feed already (put appends
    # under the lock before it returns), so ending the feed here loses none of them.
    task.add_done_callback(lambda _t: feed.end())
    finished = False
    try:
        while (event := await feed.get()) is not None:
            yield event
        finished = True
    finally:
        feed.close()  # a straggler thread's put returns at once
        if not finished:
            cancel.set("the stream's reader stopped reading")
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(_settled(task))
    result = task.result()  # raises the run's error
    yield Completed(result.run_id, result=result, dropped_deltas=feed.dropped)


async def _settled(task: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        await task
