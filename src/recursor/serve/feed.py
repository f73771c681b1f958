"""One run's live events: the seam between the server and the library.

:func:`run_feed` turns a run's stream (``RLM.astream``, or a session's ``astream`` for an
ask) into what the server consumes: the typed events as they happen, then the
:class:`~recursor.result.RLMResult`. Closing it early (``aclose``, or the task that iterates it
being cancelled, as when an HTTP client disconnects) leaves the stream, which stops the run and
returns only once its tree is closed (its workers killed, its sub-calls stopped).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from recursor.result import RLMResult
from recursor.streaming import Completed
from recursor.trace import Event

__all__ = ["RunFeed", "run_feed"]

RunFeed = AsyncGenerator[Event | RLMResult, None]


async def run_feed(
    stream: AsyncGenerator[Event, None], close: Callable[[], None] | None = None
) -> RunFeed:
    """The events of ``stream`` and last its result; ``close`` runs when the feed ends (the
    run's own RLM, when one was built for it)."""
    try:
        async for event in stream:
            if isinstance(event, Completed):
                yield event.result
                return
            yield event
    finally:
        await stream.aclose()
        if close is not None:
            close()
