"""Leaving a stream while a model that cannot stream is mid-call: nothing of the run outlives
the stream but that call's own daemon thread, whose tokens are still counted when it returns,
and the RLM runs again at once."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

import recursor.rlm as rlm_module
from recursor import Limits
from recursor.lm.base import Completion, Message, SyncLM
from recursor.trace import CellRan, Event
from recursor.tree import Tree
from recursor.usage import Usage
from tests.conftest import code, make_rlm

ENVS = ["inprocess", "subprocess"]


class HangingRoot(SyncLM):
    """Root model: for a SLOWQ query, a cell printing the worker's pid, then a call that
    hangs until released; for any other query, an answer at once. Cannot stream."""

    name = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.hanging = threading.Event()
        self.returned = threading.Event()

    def complete(self, messages: list[Message]) -> Completion:
        if not any("SLOWQ" in m["content"] for m in messages):
            return Completion("FINAL(quick)", Usage.of_call(10, 2, None))
        if len(messages) == 2:
            return Completion(code("import os\nprint(os.getpid())"), Usage.of_call(10, 5, None))
        self.hanging.set()
        self.release.wait(30)
        self.returned.set()
        return Completion("FINAL(late)", Usage.of_call(1000, 7, None))


def _non_daemon_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if not t.daemon and t is not threading.main_thread() and t.is_alive()
    ]


def _worker_pid(events: list[Event]) -> int:
    ran = next(e for e in events if isinstance(e, CellRan))
    return int(ran.stdout.strip())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _leave_during_the_hanging_call(
    env: str, drive: str
) -> tuple[HangingRoot, list[Event], float, str | None]:
    root = HangingRoot()
    with make_rlm(env, root, limits=Limits(cell_timeout_s=10, max_iterations=3)) as rlm:
        events: list[Event] = []
        if drive == "sync":
            stream = rlm.stream("SLOWQ question", context="ctx")
            for event in stream:
                events.append(event)
                if isinstance(event, CellRan):
                    assert root.hanging.wait(10)
                    break
            t0 = time.monotonic()
            stream.close()
            left_in = time.monotonic() - t0
        else:

            async def go() -> float:
                agen = rlm.astream("SLOWQ question", context="ctx")
                async for event in agen:
                    events.append(event)
                    if isinstance(event, CellRan):
                        assert await asyncio.to_thread(root.hanging.wait, 10)
                        break
                t0 = time.monotonic()
                await agen.aclose()  # type: ignore[attr-defined]
                return time.monotonic() - t0

            left_in = asyncio.run(go())
        # the model call still hangs, and the same RLM answers another question at once
        assert not root.returned.is_set()
        t0 = time.monotonic()
        again = rlm.completion("another question", context="ctx")
        assert again.answer == "quick" and time.monotonic() - t0 < 5
        answer = again.answer
    return root, events, left_in, answer


@pytest.fixture
def trees(monkeypatch: pytest.MonkeyPatch) -> list[Tree]:
    """Every run's Tree, to read its ledger after the run is over."""
    made: list[Tree] = []

    class Kept(Tree):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(rlm_module, "Tree", Kept)
    return made


@pytest.mark.parametrize("drive", ["sync", "async"])
@pytest.mark.parametrize("env", ENVS)
def test_leaving_mid_call_leaves_nothing_running(env: str, drive: str, trees: list[Tree]) -> None:
    before = set(_non_daemon_threads())
    root, events, left_in, _ = _leave_during_the_hanging_call(env, drive)
    try:
        assert left_in < 5, f"leaving the stream took {left_in:.1f}s"
        pid = _worker_pid(events)
        if env == "subprocess":
            assert pid != os.getpid()
            assert _gone(pid), "the run's worker outlived the stream"
        assert set(_non_daemon_threads()) <= before, _non_daemon_threads()
    finally:
        root.release.set()
    assert root.returned.wait(10)
    # the abandoned call's tokens are counted in its run's ledger once it returns
    ledger = trees[0].ledger
    until = time.monotonic() + 5
    while ledger.report().total.input_tokens < 1000 and time.monotonic() < until:
        time.sleep(0.01)
    assert ledger.report().total.input_tokens == 10 + 1000
    assert ledger.report().total.output_tokens == 5 + 7


def test_a_timed_out_call_is_counted_when_it_returns(trees: list[Tree]) -> None:
    root = HangingRoot()
    limits = Limits(cell_timeout_s=10, max_iterations=3, timeout_s=3)
    with make_rlm("inprocess", root, limits=limits) as rlm:
        result = rlm.completion("SLOWQ question", context="ctx")
    assert result.stop_reason == "timeout"
    assert result.usage.total.input_tokens == 10  # the snapshot when the run ended
    root.release.set()
    assert root.returned.wait(10)
    until = time.monotonic() + 5
    while trees[0].ledger.report().total.input_tokens < 1010 and time.monotonic() < until:
        time.sleep(0.01)
    assert trees[0].ledger.report().by_model["hanging"].input_tokens == 1010
