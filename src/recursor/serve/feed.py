"""One run's live events: the seam between the server and the library.

:func:`run_feed` is an async generator: it yields the run's typed events as they happen and
last the :class:`~recursor.result.RLMResult`; closing it early (``aclose``, or the task that
iterates it being cancelled, as when an HTTP client disconnects) cancels the run and returns
only once the run's tree is closed (its workers killed, its sub-calls stopped).

Today it is built from what the library has: a per-run sink pushes the events from the trace's
delivery thread onto this loop, and ``acompletion`` runs as a task. When ``RLM.astream``
exists, this function becomes a thin wrapper over it and nothing else in the server changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from recursor.context import ContextInput
from recursor.result import RLMResult
from recursor.rlm import RLM
from recursor.trace import Event, Sink

__all__ = ["RunFeed", "run_feed"]

#: what the server hands a feed: build the run's RLM around this sink
RLMFactory = Callable[[Sink], RLM]
RunFeed = AsyncGenerator[Event | RLMResult, None]

_DONE = object()


async def run_feed(build: RLMFactory, query: str, context: ContextInput) -> RunFeed:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def sink(event: Event) -> None:
        # called on the trace's delivery thread; a loop already closed has nobody listening
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, event)

    rlm = build(sink)
    task = asyncio.create_task(rlm.acompletion(query, context))
    # acompletion returns after the sinks got every event, so _DONE lands after the last one
    task.add_done_callback(lambda _t: queue.put_nowait(_DONE))
    try:
        while (item := await queue.get()) is not _DONE:
            assert isinstance(item, Event)
            yield item
        yield task.result()
    finally:
        if not task.done():
            task.cancel()
            # wait for the tree to close: acompletion's finally kills the worker
            with contextlib.suppress(asyncio.CancelledError):
                await task
        rlm.close()
