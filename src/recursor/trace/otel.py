"""Export runs as OpenTelemetry spans (``pip install "recursor[otel]"``).

    from recursor.trace.otel import OTelSink
    RLM(..., sinks=[OTelSink()])           # the global tracer provider, or pass one

Each run is a span (``rlm.run``); a child RLM's span is a child of its parent run's span. Under
a run: one ``chat MODEL`` span per root model call (``gen_ai.*`` attributes after the GenAI
semantic conventions: model, input and output tokens), one ``rlm.cell`` span per cell, one
``chat MODEL`` span per plain sub-call. Limit hits are span events on the run, and a run that
did not end with a final answer has an error status.

Events arrive after the thing they describe ended, with its duration, so spans are created
with explicit start and end times rather than around the work.
"""

from __future__ import annotations

import threading
from typing import Any

try:
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import Span, Status, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'OpenTelemetry export needs the otel extra: pip install "recursor[otel]"'
    ) from exc

from recursor.trace.events import (
    CellRan,
    Event,
    LimitHit,
    ModelCalled,
    RunFinished,
    RunStarted,
    SubcallMade,
)
from recursor.trace.redact import scrub

#: characters of content (query, code, reply, answer) kept per attribute
_CONTENT_CHARS = 4_000
Attr = str | bool | int | float


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _attrs(values: dict[str, Any]) -> dict[str, Attr]:
    """Only values OpenTelemetry accepts (None dropped)."""
    return {k: v for k, v in values.items() if isinstance(v, str | bool | int | float)}


def _chat_attributes(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    """GenAI semantic-convention attributes of one model call (root turn or plain sub-call)."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": usage.get("input_tokens"),
        "gen_ai.usage.output_tokens": usage.get("output_tokens"),
        "rlm.cost_usd": usage.get("cost_usd"),
    }


class OTelSink:
    """A trace sink that turns events into OpenTelemetry spans.

    ``capture_content``: also record query, code, model replies and answers (cut to 4,000
    characters, API keys masked); off, spans carry only names, sizes, tokens and timings.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        tracer: Tracer | None = None,
        capture_content: bool = True,
    ) -> None:
        self.tracer = tracer or otel_trace.get_tracer("recursor", tracer_provider=tracer_provider)
        self._provider = tracer_provider
        self.capture_content = capture_content
        self._lock = threading.Lock()
        self._runs: dict[str, Span] = {}

    def _content(self, text: str | None) -> str | None:
        if not self.capture_content or text is None:
            return None
        return scrub(text[:_CONTENT_CHARS])

    def _child(
        self,
        run_id: str,
        name: str,
        window: tuple[float, float],
        attrs: dict[str, Any],
        *,
        error: str | None = None,
    ) -> None:
        parent = self._runs.get(run_id)
        if parent is None:
            return
        start, end = window
        span = self.tracer.start_span(
            name,
            context=otel_trace.set_span_in_context(parent),
            start_time=_ns(start),
            attributes=_attrs({"rlm.run_id": run_id, **attrs}),
        )
        if error:
            lines = error.strip().splitlines()
            span.set_status(Status(StatusCode.ERROR, lines[-1] if lines else error))
        span.end(end_time=_ns(end))

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._handle(event)

    def flush(self) -> None:
        """Export the finished spans now, when the provider batches them (the SDK's does)."""
        provider = self._provider or otel_trace.get_tracer_provider()
        # force_flush is the SDK's, not the API's: a no-op provider has none
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            force_flush()

    def close(self) -> None:
        """End the spans of runs that never finished (marked as errors), then flush."""
        with self._lock:
            runs, self._runs = list(self._runs.values()), {}
        for span in runs:
            span.set_status(Status(StatusCode.ERROR, "the trace ended before the run did"))
            span.end()
        self.flush()

    def _handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_started(event)
        elif isinstance(event, ModelCalled):
            self._model_called(event)
        elif isinstance(event, CellRan):
            self._cell_ran(event)
        elif isinstance(event, SubcallMade):
            self._subcall_made(event)
        elif isinstance(event, LimitHit):
            self._limit_hit(event)
        elif isinstance(event, RunFinished):
            self._run_finished(event)

    def _run_started(self, event: RunStarted) -> None:
        parent = self._runs.get(event.parent_id or "")
        ctx = otel_trace.set_span_in_context(parent) if parent is not None else None
        self._runs[event.run_id] = self.tracer.start_span(
            "rlm.run",
            context=ctx,
            start_time=_ns(event.t),
            attributes=_attrs(
                {
                    "rlm.run_id": event.run_id,
                    "rlm.parent_id": event.parent_id,
                    "rlm.depth": event.depth,
                    "rlm.query": self._content(event.query),
                    "rlm.context.type": event.context_meta.get("type"),
                    "rlm.context.chars": event.context_meta.get("total_chars"),
                    "rlm.root_model": event.config.get("root"),
                    "rlm.sub_model": event.config.get("sub"),
                    "rlm.max_depth": event.config.get("max_depth"),
                    "rlm.environment": event.config.get("environment"),
                }
            ),
        )

    def _model_called(self, event: ModelCalled) -> None:
        self._child(
            event.run_id,
            f"chat {event.model}",
            (event.t - event.latency_s, event.t),
            {
                **_chat_attributes(event.model, event.usage),
                "rlm.iteration": event.iteration,
                "rlm.reply": self._content(event.reply),
            },
        )

    def _cell_ran(self, event: CellRan) -> None:
        self._child(
            event.run_id,
            "rlm.cell",
            (event.t - event.duration_s, event.t),
            {
                "rlm.iteration": event.iteration,
                "rlm.cell.index": event.index,
                "rlm.cell.code": self._content(event.code),
                "rlm.cell.stdout_chars": len(event.stdout),
                "rlm.cell.error": self._content(event.error),
                "rlm.cell.timed_out": event.timed_out,
            },
            error=event.error,
        )

    def _subcall_made(self, event: SubcallMade) -> None:
        if event.child_run_id is not None:
            return  # the child run is a span of its own, under this run
        self._child(
            event.run_id,
            f"chat {event.model}",
            (event.t - event.latency_s, event.t),
            {
                **_chat_attributes(event.model, event.usage),
                "rlm.subcall.kind": event.kind,
                "rlm.subcall.depth": event.depth,
                "rlm.subcall.prompt_chars": event.prompt_chars,
                "rlm.subcall.error": event.error,
            },
            error=event.error,
        )

    def _limit_hit(self, event: LimitHit) -> None:
        run = self._runs.get(event.run_id)
        if run is not None:
            run.add_event(
                "rlm.limit_hit",
                {"rlm.limit": event.limit, "rlm.message": event.message},
                timestamp=_ns(event.t),
            )

    def _run_finished(self, event: RunFinished) -> None:
        run = self._runs.pop(event.run_id, None)
        if run is None:
            return
        run.set_attributes(
            _attrs(
                {
                    "rlm.stop_reason": event.stop_reason,
                    "rlm.iterations": event.iterations,
                    "rlm.answer": self._content(event.answer),
                    "rlm.error": event.error,
                }
            )
        )
        if event.stop_reason != "final":
            run.set_status(Status(StatusCode.ERROR, event.error or event.stop_reason))
        run.end(end_time=_ns(event.t))
