"""The async stream's queue is bounded: a slow reader loses token deltas, never anything else."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import cast

import pytest

from recursor._cancel import Cancel
from recursor.result import RLMResult
from recursor.streaming import Completed, _AsyncFeed, astream_run
from recursor.trace import CellStarted, ModelDelta
from recursor.trace.delivery import Sink
from recursor.trace.events import Event


def cell(i: int) -> CellStarted:
    return CellStarted("root", iteration=i, index=0, code=f"print({i})", t=float(i))


def delta(run: str, text: str, iteration: int = 0) -> ModelDelta:
    return ModelDelta(run, iteration, text)


def test_full_feed_merges_then_drops_deltas_and_keeps_every_other_event() -> None:
    async def go() -> tuple[list[Event], _AsyncFeed]:
        feed = _AsyncFeed(asyncio.get_running_loop(), 4)
        for event in (cell(1), delta("a", "x"), delta("b", "y"), cell(2)):
            feed.put(event)
        feed.put(delta("a", "z"))  # full, tail is a cell: the oldest delta ("x") goes
        feed.put(delta("a", "w"))  # full, tail is the same call's delta: merged, nothing lost
        feed.put(cell(3))  # drops "y"
        feed.put(cell(4))  # drops "zw"
        feed.put(cell(5))  # no delta left: the loop cannot wait for itself, so it goes in
        feed.end()
        got = []
        while (event := await feed.get()) is not None:
            got.append(event)
        return got, feed

    got, feed = asyncio.run(go())
    assert got == [cell(1), cell(2), cell(3), cell(4), cell(5)]
    assert feed.dropped == 3
    assert feed.peak == 5


def test_merging_keeps_the_whole_text_of_a_call() -> None:
    async def go() -> list[Event]:
        feed = _AsyncFeed(asyncio.get_running_loop(), 2)
        feed.put(cell(1))
        for piece in "hello world":
            feed.put(delta("a", piece))
        feed.end()
        return [e async for e in _drain(feed)]

    got = asyncio.run(go())
    assert got[0] == cell(1)
    assert [e.text for e in got[1:] if isinstance(e, ModelDelta)] == ["hello world"]


async def _drain(feed: _AsyncFeed) -> AsyncIterator[Event]:
    while (event := await feed.get()) is not None:
        yield event


def test_a_thread_waits_for_a_slow_reader_instead_of_growing_the_queue() -> None:
    async def go() -> tuple[list[Event], _AsyncFeed]:
        feed = _AsyncFeed(asyncio.get_running_loop(), 2)

        def emit() -> None:
            for i in range(20):
                feed.put(cell(i))

        thread = threading.Thread(target=emit)
        thread.start()
        got = []
        while len(got) < 20:
            event = await feed.get()
            assert event is not None
            got.append(event)
            await asyncio.sleep(0.002)  # a slow reader
        thread.join(5)
        return got, feed

    got, feed = asyncio.run(go())
    assert got == [cell(i) for i in range(20)]
    assert feed.peak <= 2 and feed.dropped == 0


def test_closing_releases_a_waiting_thread() -> None:
    async def go() -> bool:
        feed = _AsyncFeed(asyncio.get_running_loop(), 1)
        feed.put(cell(0))
        thread = threading.Thread(target=feed.put, args=(cell(1),), daemon=True)
        thread.start()
        await asyncio.sleep(0.05)
        assert thread.is_alive()  # waiting for room
        feed.close()
        await asyncio.to_thread(thread.join, 5)
        return thread.is_alive()

    assert asyncio.run(go()) is False


def test_bound_must_be_positive() -> None:
    async def go() -> None:
        _AsyncFeed(asyncio.get_running_loop(), 0)

    with pytest.raises(ValueError, match="at least 1"):
        asyncio.run(go())


def test_a_reader_that_falls_behind_still_gets_every_structural_event_and_the_end() -> None:
    """A run floods the stream with deltas (5 calls x 400 tokens) from a thread while its
    reader sleeps: the queue stays within its bound, and the cells and Completed all arrive."""
    emitted = threading.Event()
    result = cast(RLMResult, type("R", (), {"run_id": "root", "answer": "done"})())

    async def run(listen: Sink, cancel: Cancel) -> RLMResult:
        def flood() -> None:
            for i in range(5):
                listen(cell(i))
                for k in range(400):
                    # two runs interleaved (a child streams too), so tails rarely merge
                    listen(delta("root" if k % 2 else "child", f"{k} ", iteration=i))
            emitted.set()

        await asyncio.to_thread(flood)
        return result

    async def go() -> list[Event]:
        got: list[Event] = []
        stream = astream_run(run, bound=16)
        async for event in stream:
            got.append(event)
            if len(got) == 1:
                await asyncio.to_thread(emitted.wait, 10)  # read nothing while it floods
        return got

    got = asyncio.run(go())
    assert [e for e in got if isinstance(e, CellStarted)] == [cell(i) for i in range(5)]
    end = got[-1]
    assert isinstance(end, Completed) and end.result is result
    assert len(got) <= 16 + 2  # the first event, the bound, Completed
    deltas = [e for e in got if isinstance(e, ModelDelta)]
    assert end.dropped_deltas > 0
    # the newest deltas are the ones kept: the last call's end is there
    assert deltas and deltas[-1].iteration == 4 and deltas[-1].text.endswith("399 ")
