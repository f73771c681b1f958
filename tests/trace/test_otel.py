"""The OpenTelemetry exporter, on the SDK's in-memory span exporter."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from recursor.rlm import RLMResult
from recursor.trace import Trace


def test_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "recursor.trace.otel", raising=False)
    with pytest.raises(ImportError, match=r'pip install "recursor\[otel\]"'):
        importlib.import_module("recursor.trace.otel")
    monkeypatch.delitem(sys.modules, "recursor.trace.otel", raising=False)


def test_spans_mirror_the_run_tree(recorded: tuple[RLMResult, Path]) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from recursor.trace.otel import OTelSink

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OTelSink(provider)
    result, path = recorded
    for event in Trace.load(path):
        sink(event)
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name == "rlm.run"]
    assert len(runs) == 3
    root = next(s for s in runs if s.attributes["rlm.depth"] == 0)
    children = [s for s in runs if s.attributes["rlm.depth"] == 1]
    assert all(c.parent is not None and c.parent.span_id == root.context.span_id for c in children)
    assert all(c.context.trace_id == root.context.trace_id for c in spans)
    assert root.attributes["rlm.stop_reason"] == "final"
    assert root.status.status_code != StatusCode.ERROR
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == result.usage.total.calls
    root_chats = [s for s in chats if s.parent and s.parent.span_id == root.context.span_id]
    assert {s.attributes["gen_ai.request.model"] for s in root_chats} == {"root-model", "sub-model"}
    first = min(root_chats, key=lambda s: s.start_time or 0)
    assert first.attributes["gen_ai.usage.input_tokens"] > 0
    cells = [s for s in spans if s.name == "rlm.cell"]
    assert len(cells) == 6
    assert all((s.end_time or 0) >= (s.start_time or 0) for s in spans)


def test_failed_run_and_limit_hit_are_marked(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from recursor import RLM, Limits
    from recursor.testing import FunctionLM, ScriptedLM
    from recursor.trace.otel import OTelSink

    from ..conftest import code

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    root = ScriptedLM([code("llm_query_batched(['a', 'b'])\n1/0"), code("print(2)")])
    RLM(
        root,
        FunctionLM(lambda m: "ok"),
        environment="inprocess",
        limits=Limits(max_iterations=1, max_subcalls=1),
        sinks=[OTelSink(provider, capture_content=False)],
    ).completion("q", "c")
    spans = exporter.get_finished_spans()
    [run] = [s for s in spans if s.name == "rlm.run"]
    assert run.status.status_code == StatusCode.ERROR
    assert [e.name for e in run.events] == ["rlm.limit_hit"]
    assert "rlm.query" not in run.attributes  # content capture off
    failed = [s for s in spans if s.name == "rlm.cell" and s.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1 and "ZeroDivisionError" in (failed[0].status.description or "")


def test_close_ends_unfinished_runs_and_flush_exports(recorded: tuple[RLMResult, Path]) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from recursor.trace import RunFinished
    from recursor.trace.otel import OTelSink

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    # batched, with a long delay: only flush() gets spans out while the test runs
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    sink = OTelSink(provider)
    _, path = recorded
    for event in Trace.load(path):
        if not isinstance(event, RunFinished):
            sink(event)  # the runs never finish (a crash)
    sink.flush()
    assert {s.name for s in exporter.get_finished_spans()} >= {"rlm.cell"}
    assert not [s for s in exporter.get_finished_spans() if s.name == "rlm.run"]
    sink.close()
    runs = [s for s in exporter.get_finished_spans() if s.name == "rlm.run"]
    assert runs and all(s.status.status_code == StatusCode.ERROR for s in runs)
    provider.shutdown()
