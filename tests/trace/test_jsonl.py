"""The streaming JSONL sink, the compact format, context blobs, typed events for the tree."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from recursor import RLM, Limits
from recursor.errors import ScriptExhausted
from recursor.lm.base import Message
from recursor.rlm import RLMResult
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import (
    CellRan,
    JsonlSink,
    LimitHit,
    ModelCalled,
    RunFinished,
    RunStarted,
    SubcallMade,
    Trace,
)
from recursor.trace.events import event_from_dict, prompt_digest
from recursor.trace.jsonl import context_blob, iter_records, read_context_blob

from ..conftest import code
from .conftest import CONTEXT, record


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tree_events_have_parent_links_and_depth(recorded: tuple[RLMResult, Path]) -> None:
    result, path = recorded
    assert result.answer == "child done + child done"
    trace = Trace.load(path)
    starts = trace.of(RunStarted)
    root = starts[0]
    assert root.parent_id is None and root.depth == 0
    children = [s for s in starts if s.parent_id == root.run_id]
    assert len(children) == 2 and {c.depth for c in children} == {1}
    # rlm_query sub-calls name their child run; the child's answer is recorded as the reply
    rlm_calls = [s for s in trace.of(SubcallMade) if s.kind == "rlm"]
    assert {s.child_run_id for s in rlm_calls} == {c.run_id for c in children}
    assert {s.reply for s in rlm_calls} == {"child done"}
    # plain sub-calls carry their reply, a prompt preview and the prompt's hash
    plain = [s for s in trace.of(SubcallMade) if s.kind == "llm"]
    assert len(plain) == 4  # 2 from the root's batch, 1 per child
    first = next(s for s in plain if s.run_id == root.run_id and s.index == 0)
    assert first.prompt == f"up: {CONTEXT[:6]}" and first.reply == CONTEXT[:6].upper()
    assert first.prompt_sha256 == prompt_digest(first.prompt)
    assert [e.type for e in trace][-1] == "run_finished"
    finished = trace.of(RunFinished)
    assert [f.run_id for f in finished][-1] == root.run_id
    assert finished[-1].usage["total"]["calls"] == result.usage.total.calls
    # the same events in memory and on disk, in the same order
    assert [e.to_dict() for e in trace] == [e.to_dict() for e in result.trace]


def test_lines_are_compact_and_messages_are_deltas(recorded: tuple[RLMResult, Path]) -> None:
    result, path = recorded
    text = path.read_text()
    assert '", "' not in text.split("\n", 2)[1]  # no padding after separators
    root_calls = [c for c in result.trace.of(ModelCalled) if c.run_id == result.run_id]
    system = root_calls[0].new_messages[0]["content"]
    assert len(system) > 500
    # the root's system prompt is written once, not once per iteration
    assert text.count(json.dumps(system, ensure_ascii=False)[1:-1]) == 1
    assert all(len(c.new_messages) == 1 for c in root_calls[1:])


def test_sink_writes_while_the_run_goes(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    seen: list[list[str]] = []

    def root(messages: list[Message]) -> str:
        # What is on disk at each model call, before the run ends (sinks get events on a
        # thread of their own: what was emitted so far arrives within moments).
        want = 1 if not seen else 3
        deadline = time.monotonic() + 10
        while len(list(iter_records(path))) < want and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append([r["type"] for r in iter_records(path)])  # type: ignore[misc]
        return code("print('hi')") if len(seen) == 1 else "FINAL(ok)"

    with JsonlSink(path) as sink:
        RLM(FunctionLM(root), environment="inprocess", sinks=[sink]).completion("q", "ctx")
    assert seen[0] == ["run_started"]
    assert seen[1] == ["run_started", "model_called", "cell_ran"]
    assert [r["type"] for r in iter_records(path)][-1] == "run_finished"


def test_a_crash_loses_nothing_already_done(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    sink = JsonlSink(path)
    root = ScriptedLM([code("x = 6 * 7\nprint(x)")])  # runs out on the second call
    with pytest.raises(ScriptExhausted):
        RLM(root, environment="inprocess", sinks=[sink]).completion("q", "ctx")
    # not closed: everything before the crash was flushed already
    kinds = [r["type"] for r in iter_records(path)]
    assert kinds == ["run_started", "model_called", "cell_ran"]
    assert lines(path)[2]["stdout"] == "42\n"
    sink.close()


def test_concurrent_batch_lines_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    root = ScriptedLM(
        [code("r = llm_query_batched([f'up: {i} ' * 50 for i in range(64)])"), "FINAL(done)"]
    )
    sub = FunctionLM(lambda m: m[-1]["content"].upper() * 20, name="sub")
    with JsonlSink(path) as sink:
        RLM(root, sub, environment="inprocess", sinks=[sink], max_concurrency=16).completion(
            "q", "c"
        )
    records = lines(path)  # every line parses on its own
    subs = [r for r in records if r["type"] == "subcall"]
    assert sorted(r["index"] for r in subs) == list(range(64))  # type: ignore[type-var]


def test_context_blob_stored_once_and_only_when_asked(tmp_path: Path) -> None:
    marker = "UNIQUE-CONTEXT-MARKER-" + "z" * 1000
    context = CONTEXT + marker
    plain = tmp_path / "plain.jsonl"
    record(plain, store_context=False, context=context)
    assert marker not in plain.read_text()
    assert Trace.load(plain).of(RunStarted)[0].context_sha256 is None

    stored = tmp_path / "stored.jsonl"
    with JsonlSink(stored, store_context=True) as sink:
        for _ in range(2):  # two completions over the same context, one sink
            rlm = RLM(ScriptedLM(["FINAL(x)"]), environment="inprocess", sinks=[sink])
            rlm.completion("q", context=context)
    text = stored.read_text()
    assert text.count(marker) == 1  # content-addressed: written once
    starts = Trace.load(stored).of(RunStarted)
    assert len(starts) == 2 and starts[0].context_sha256 == starts[1].context_sha256
    digest = starts[0].context_sha256
    assert digest is not None
    assert read_context_blob(stored, digest) == ("text", context)
    assert read_context_blob(stored, "0" * 64) is None
    assert len(Trace.load(stored)) == len(text.splitlines()) - 1 == 6  # the blob is no event


def test_json_context_blob_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "doc.jsonl"
    docs = {"a.txt": "alpha", "b.txt": "beta </script>"}
    with JsonlSink(path, store_context=True) as sink:
        RLM(ScriptedLM(["FINAL(x)"]), environment="inprocess", sinks=[sink]).completion("q", docs)
    digest = Trace.load(path).of(RunStarted)[0].context_sha256
    assert digest is not None
    assert read_context_blob(path, digest) == ("json", docs)


def test_big_context_gives_a_small_trace(tmp_path: Path) -> None:
    big = "0123456789abcdef\n" * 300_000  # 5 MB
    path = tmp_path / "big.jsonl"
    root = ScriptedLM(
        [
            code("print(len(context))"),
            code("print(context[:40])"),
            code("print(context.count('a'))"),
            "FINAL(done)",
        ]
    )
    with JsonlSink(path) as sink:
        RLM(root, environment="inprocess", sinks=[sink]).completion("q", context=big)
    assert path.stat().st_size < 30_000


def test_limit_hits_are_events(tmp_path: Path) -> None:
    path = tmp_path / "limits.jsonl"
    root = ScriptedLM([code("r = llm_query_batched(['a: x', 'a: y', 'a: z'])"), "FINAL(done)"])
    sub = FunctionLM(lambda m: "ok", name="sub")
    with JsonlSink(path) as sink:
        RLM(
            root, sub, environment="inprocess", limits=Limits(max_subcalls=1), sinks=[sink]
        ).completion("q", "c")
    hits = Trace.load(path).of(LimitHit)
    assert [h.limit for h in hits] == ["max_subcalls"]
    assert "2 of 3" in hits[0].message


def test_trace_save_matches_the_sink(recorded: tuple[RLMResult, Path], tmp_path: Path) -> None:
    result, path = recorded
    saved = result.trace.save(tmp_path / "saved.jsonl")
    streamed = [r for r in lines(path) if r["type"] != "context_blob"]
    assert lines(saved) == streamed


def test_readers_tolerate_new_fields_and_reject_unknown_types() -> None:
    cell = CellRan(
        "r1",
        iteration=1,
        index=0,
        code="x",
        stdout="",
        stderr="",
        error=None,
        duration_s=0.1,
        timed_out=False,
        lost_state=False,
        final=None,
    )
    data = {**cell.to_dict(), "added_in_a_later_version": 1}
    assert event_from_dict(data) == cell
    with pytest.raises(ValueError, match="unknown trace event type"):
        event_from_dict({"type": "no_such_event", "run_id": "r"})


def test_closed_sink_refuses_events(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "x.jsonl")
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        sink(LimitHit("r", limit="max_tokens", message="m"))


def test_async_driver_streams_the_same_way(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "async.jsonl"
    root = ScriptedLM([code("print(len(context))"), "FINAL(done)"])
    with JsonlSink(path, store_context=True) as sink:
        rlm = RLM(root, environment="inprocess", sinks=[sink])
        result = asyncio.run(rlm.acompletion("q", context="abc" * 100))
    assert result.answer == "done"
    kinds = [r["type"] for r in iter_records(path, blobs=True)]
    first = ["context_blob", "run_started", "model_called", "cell_ran"]
    assert kinds == [*first, "model_called", "run_finished"]


def _strict(line: str) -> dict[str, object]:
    """JSON as a browser reads it: NaN and Infinity are errors."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    record: dict[str, object] = json.loads(line, parse_constant=refuse)
    return record


def test_non_finite_numbers_are_written_as_null(tmp_path: Path) -> None:
    nan, inf = float("nan"), float("inf")
    cell = CellRan(
        "r1",
        iteration=1,
        index=0,
        code="x",
        stdout="",
        stderr="",
        error=None,
        duration_s=nan,  # what a forged result frame carried before the wire refused it
        timed_out=False,
        lost_state=False,
        final=None,
    )
    call = ModelCalled(
        "r1",
        iteration=1,
        model="m",
        new_messages=[],
        reply="r",
        usage={"cost_usd": nan, "input_tokens": 3, "nested": [inf, -inf, 1.5]},
        latency_s=0.25,
    )
    path = tmp_path / "t.jsonl"
    with JsonlSink(path) as sink:
        sink(call)
        sink(cell)
    saved = Trace.load(path).save(tmp_path / "saved.jsonl")
    for p in (path, saved):
        got = [_strict(line) for line in p.read_text().splitlines()]
        assert got[1]["duration_s"] is None and got[1]["code"] == "x"
        assert got[0]["usage"] == {"cost_usd": None, "input_tokens": 3, "nested": [None, None, 1.5]}
        assert got[0]["latency_s"] == 0.25
    # the nulls read back are drawn, not a TypeError
    import io

    from rich.console import Console

    from recursor.trace.console import ConsoleSink

    sink = ConsoleSink(Console(file=io.StringIO(), width=120), live=False)
    sink(RunStarted("r1", parent_id=None, depth=0, query="q", context_meta={}, config={}))
    for event in Trace.load(path):
        sink(event)
    sink.console.print(sink.render())
    assert "cell 1 · ? s" in str(sink.console.file.getvalue())  # type: ignore[attr-defined]
    # a context blob of data with a NaN: strict JSON too, and its key is stable
    digest, line = context_blob([1.0, nan])
    assert _strict(line)["data"] == [1.0, None] and context_blob([1.0, nan])[0] == digest
