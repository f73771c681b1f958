"""RLM.stream / astream: the run's events live, from every level, and stopping by leaving."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from recursor import Limits
from recursor.streaming import Completed
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import (
    CellRan,
    CellStarted,
    Event,
    ModelCalled,
    ModelDelta,
    RunFinished,
    RunStarted,
    SubcallMade,
)
from tests.conftest import code, make_rlm

ENVS = ["inprocess", "subprocess"]


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.ident is not None}


@pytest.mark.parametrize("env", ENVS)
def test_stream_yields_every_level_then_completed(env: str) -> None:
    root = ScriptedLM(
        [
            code("x = rlm_query('child question')\nprint(x)"),
            "FINAL(done)",
        ]
    )
    child = ScriptedLM(["FINAL(child answer)"])
    with make_rlm(env, root, child, max_depth=2) as rlm:
        events = list(rlm.stream("q", context="ctx"))
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is Completed
    final = events[-1]
    assert isinstance(final, Completed)
    assert final.result.answer == "done"
    started = [e for e in events if isinstance(e, RunStarted)]
    assert len(started) == 2
    root_id, child_start = started[0].run_id, started[1]
    assert child_start.parent_id == root_id
    # the cell started before its children's events, ended after them
    cell_start = next(i for i, e in enumerate(events) if isinstance(e, CellStarted))
    cell_end = next(i for i, e in enumerate(events) if isinstance(e, CellRan))
    child_idx = events.index(child_start)
    assert cell_start < child_idx < cell_end
    assert any(isinstance(e, SubcallMade) and e.child_run_id == child_start.run_id for e in events)
    # a backend that cannot stream: one delta per reply, before its ModelCalled
    deltas = [e for e in events if isinstance(e, ModelDelta) and e.run_id == root_id]
    assert [d.text for d in deltas] == [
        r.reply for r in events if isinstance(r, ModelCalled) and r.run_id == root_id
    ]
    first_delta = events.index(deltas[0])
    first_called = next(i for i, e in enumerate(events) if isinstance(e, ModelCalled))
    assert first_delta < first_called
    # live-only events never reach the result's trace
    assert not any(isinstance(e, ModelDelta | CellStarted) for e in final.result.trace)
    assert sum(isinstance(e, RunFinished) for e in events) == 2


def test_plain_completion_does_not_stream() -> None:
    """No listener, no deltas: the backend is called the plain way."""
    root = ScriptedLM(["FINAL(a)"])
    with make_rlm("inprocess", root) as rlm:
        result = rlm.completion("q")
    assert result.answer == "a"
    assert not any(isinstance(e, ModelDelta) for e in result.trace)


@pytest.mark.parametrize("env", ENVS)
def test_breaking_after_first_cell_stops_everything(env: str) -> None:
    """A stream broken after the first cell: no worker process, no pending sub-call, no thread."""
    started_calls: list[str] = []
    gate = threading.Event()

    def sub(messages: list[dict[str, str]]) -> str:
        started_calls.append(messages[-1]["content"])
        gate.wait(5)
        return "sub"

    root = FunctionLM(
        lambda messages: (
            code(
                "import os\n"
                "r = llm_query_batched([f'{os.getpid()}:p{i}' for i in range(50)])\nprint(len(r))"
            )
            if len(messages) == 2
            else "FINAL(x)"
        )
    )
    before = _threads()
    with make_rlm(env, root, FunctionLM(sub), max_concurrency=2) as rlm:
        stream = rlm.stream("q", context="ctx")
        for event in stream:
            if isinstance(event, CellStarted):
                # wait for two sub-calls in flight, then leave while the rest are queued
                until = time.monotonic() + 10
                while len(started_calls) < 2 and time.monotonic() < until:
                    time.sleep(0.01)
                break
        stream.close()  # what a for loop's break does when the generator is collected
        gate.set()
        time.sleep(0.3)
        assert len(started_calls) == 2, "queued sub-calls started after the stream was left"
        pid = int(started_calls[0].split(":")[0])
        if env == "subprocess":
            # the run's worker is gone (reaped) while the RLM, and its spare, are still open
            assert pid != os.getpid()
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    until = time.monotonic() + 5
    while time.monotonic() < until and _threads() - before:
        time.sleep(0.05)
    left = [t.name for t in threading.enumerate() if t.ident in _threads() - before]
    assert not left, left


def test_astream_and_cancel() -> None:
    async def go() -> tuple[list[Event], list[Event]]:
        root = ScriptedLM([code("print(1)"), "FINAL(ok)"])
        with make_rlm("inprocess", root) as rlm:
            full = [e async for e in rlm.astream("q")]
        slow = FunctionLM(lambda m: code("import time\ntime.sleep(30)"))
        with make_rlm("inprocess", slow, limits=Limits(cell_timeout_s=60)) as rlm:
            got: list[Event] = []
            agen = rlm.astream("q")
            async for e in agen:
                got.append(e)
                if isinstance(e, CellStarted):
                    break
            t0 = time.monotonic()
            await agen.aclose()  # type: ignore[attr-defined]
            assert time.monotonic() - t0 < 5
        return full, got

    full, got = asyncio.run(go())
    assert isinstance(full[-1], Completed) and full[-1].result.answer == "ok"
    assert any(isinstance(e, ModelDelta) for e in full)
    assert isinstance(got[-1], CellStarted)


def test_live_view_shows_the_root_reply_as_it_is_written() -> None:
    from rich.console import Console

    from recursor.cli_view import LiveView

    view = LiveView(Console(record=True, width=120), enabled=False)
    view.on_event(RunStarted("r", parent_id=None, depth=0, query="q", context_meta={}, config={}))
    view.on_event(ModelDelta("r", 1, "Let me look "))
    view.on_event(ModelDelta("r", 1, "at \x1b[31mthe [bold]context"))
    console = Console(record=True, width=120)
    console.print(view.render())
    shown = console.export_text()
    # escapes are shown as text, markup is not interpreted
    assert "model: Let me look at" in shown and "[bold]context" in shown
    assert "\x1b" not in shown
    view.on_event(CellStarted("r", 1, 0, "print(1)"))
    console = Console(record=True, width=120)
    console.print(view.render())
    assert "model:" not in console.export_text()
