"""The live console tree sink."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from recursor import RLM, Limits
from recursor.rlm import RLMResult
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import LimitHit, Trace
from recursor.trace.console import ConsoleSink

from ..conftest import code
from .conftest import child_or_upper, root_script


def test_tree_printed_when_not_a_terminal() -> None:
    buf = io.StringIO()
    sink = ConsoleSink(Console(file=buf, width=120))
    assert sink.live is False
    rlm = RLM(
        root_script(),
        FunctionLM(child_or_upper, name="sub-model"),
        max_depth=2,
        environment="inprocess",
        sinks=[sink],
    )
    rlm.completion("what is in the context?", context="abc " * 100)
    out = buf.getvalue()
    assert out.startswith("run ")
    assert "✓ child done + child done" in out
    assert "iteration 4" in out and "cell 1" in out
    assert "llm_query ×2 · sub-model" in out
    assert out.count("child run ") == 2
    assert "FINAL child done + child done" in out


def test_live_mode_and_limit_hits(recorded: tuple[RLMResult, Path]) -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True, color_system=None)
    root = ScriptedLM([code("r = llm_query_batched(['a: 1', 'a: 2'])\n1/0"), "FINAL(x)"])
    with ConsoleSink(console) as sink:
        assert sink.live is True
        RLM(
            root,
            FunctionLM(lambda m: "ok"),
            environment="inprocess",
            limits=Limits(max_subcalls=1),
            sinks=[sink],
        ).completion("q", "c")
    out = buf.getvalue()
    assert "limit hit: max_subcalls" in out
    assert "ZeroDivisionError" in out
    assert "llm_query ×1" in out

    # a sink can also be fed a saved trace, event by event
    _, path = recorded
    replayed = ConsoleSink(Console(file=io.StringIO(), width=120), live=False)
    for event in Trace.load(path):
        replayed(event)
    assert "child run" in str(replayed.console.file.getvalue())  # type: ignore[attr-defined]


def test_close_stops_the_live_tree() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    sink = ConsoleSink(console)
    sink(LimitHit("r", limit="max_tokens", message="m"))
    sink.start()
    assert sink._live is not None
    sink.flush()
    sink.close()
    sink.close()  # idempotent
    assert sink._live is None


def test_tool_calls_are_counted_under_their_iteration() -> None:
    def lookup(key: str) -> str:
        """A lookup that knows one key."""
        if key != "a":
            raise KeyError(key)
        return "A"

    buf = io.StringIO()
    body = "x = [lookup('a') for _ in range(3)]\ntry:\n    lookup('b')\nexcept Exception:\n    pass"
    rlm = RLM(
        ScriptedLM([code(body), code("FINAL(x)")]),
        environment="inprocess",
        sinks=[ConsoleSink(Console(file=buf, width=120))],
        tools=[lookup],
    )
    rlm.completion("q", context="c")
    assert "tools: lookup ×4 · 1 failed" in buf.getvalue()
