"""Runs in flight: admission (the concurrent-run cap), their events (kept in memory while they
run, written to the store as they come), followers, cancellation, and shutdown.

Every request that costs model calls is a run here, whether an RLM run or a plain model call,
so the cap, the budgets, the metrics and the run list see all of them. A run's task belongs
to the manager, not to the request that started it: a job outlives its ``POST``; a chat
request cancels its own run when its client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from recursor.context import ContextInput
from recursor.errors import RecursorError
from recursor.limits import Limits
from recursor.lm.base import Message
from recursor.result import RLMResult
from recursor.serve.feed import RunFeed, run_feed
from recursor.serve.metrics import Metrics
from recursor.serve.models import Served
from recursor.serve.store import RunStore
from recursor.trace import Event
from recursor.trace.jsonl import dumps
from recursor.trace.redact import scrub
from recursor.usage import Usage, UsageReport

__all__ = ["Outcome", "Run", "RunManager", "TooManyRuns"]


#: seconds past a run's own timeout before the server cancels it from outside
OUTER_GRACE_S = 10.0


class TooManyRuns(RecursorError):
    """The concurrent-run cap is reached (HTTP 429 with Retry-After)."""


@dataclass(slots=True)
class Outcome:
    """How a run ended, in the terms every endpoint reports."""

    state: str  # succeeded | failed | cancelled
    answer: str | None
    stop_reason: str
    usage: UsageReport
    error: str | None = None
    #: the library's root run id (trace events name it), when the run was an RLM run
    trace_run_id: str | None = None


@dataclass(slots=True)
class Run:
    id: str
    profile: str
    kind: str  # "rlm" | "model"
    query: str
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: Outcome | None = None
    task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)
    #: the API key whose day's remainder bounds this run (its budget stop is the key's)
    capped_by: str | None = None

    def notify(self) -> None:
        # wake every follower: each waits on the Event it saw, so swap in a fresh one
        old, self.changed = self.changed, asyncio.Event()
        old.set()


def event_dict(event: Event) -> dict[str, Any]:
    """An event as JSON data, with known secrets masked (as every trace writer does)."""
    data: dict[str, Any] = json.loads(scrub(dumps(event.to_dict(), ensure_ascii=False)))
    return data


class RunManager:
    def __init__(self, served: Served, store: RunStore, metrics: Metrics, *, max_runs: int) -> None:
        self.served = served
        self.store = store
        self.metrics = metrics
        self.max_runs = max_runs
        self.live: dict[str, Run] = {}
        self.accepting = True

    # -- starting -----------------------------------------------------------------------------
    def _admit(self, profile: str, kind: str, query: str, key: str | None) -> Run:
        if not self.accepting:
            raise TooManyRuns("the server is shutting down")
        if len(self.live) >= self.max_runs:
            self.metrics.rejected.labels("concurrency").inc()
            raise TooManyRuns(f"{self.max_runs} runs are in flight; retry later")
        run = Run(id="run_" + uuid.uuid4().hex[:20], profile=profile, kind=kind, query=query)
        self.store.create(run.id, profile, kind, query, key)
        self.live[run.id] = run
        self.metrics.active.inc()
        return run

    def start_rlm(  # noqa: PLR0913, PLR0917 - what a run is made of
        self,
        profile: str,
        query: str,
        context: ContextInput,
        limits: Limits,
        key: str | None,
        on_end: Callable[[Outcome], None] | None = None,
    ) -> Run:
        run = self._admit(profile, "rlm", query, key)
        body = self._rlm_body(run, profile, query, context, limits)
        # the library stops the run at timeout_s and returns its result (stop_reason
        # "timeout"); the outer bound only catches a run that fails to stop by itself
        outer = None if limits.timeout_s is None else limits.timeout_s + OUTER_GRACE_S
        run.task = asyncio.create_task(self._drive(run, body, outer, on_end))
        return run

    def start_feed(  # noqa: PLR0913, PLR0917 - what a run is made of
        self,
        profile: str,
        query: str,
        feed: RunFeed,
        limits: Limits,
        key: str | None,
        on_end: Callable[[Outcome], None] | None = None,
    ) -> Run:
        """A run whose events come from ``feed`` (a session's ask)."""
        try:
            run = self._admit(profile, "rlm", query, key)
        except BaseException:
            # never iterated: nothing started; close it so its stream is not left pending
            asyncio.get_running_loop().create_task(feed.aclose())
            raise
        outer = None if limits.timeout_s is None else limits.timeout_s + OUTER_GRACE_S
        run.task = asyncio.create_task(self._drive(run, self.feed_body(run, feed), outer, on_end))
        return run

    def start_model(
        self,
        profile: str,
        messages: list[Message],
        timeout_s: float,
        key: str | None,
        on_end: Callable[[Outcome], None] | None = None,
    ) -> Run:
        query = messages[-1]["content"] if messages else ""
        run = self._admit(profile, "model", query, key)
        body = self._model_body(profile, messages)
        run.task = asyncio.create_task(self._drive(run, body, timeout_s, on_end))
        return run

    async def _rlm_body(
        self, run: Run, profile: str, query: str, context: ContextInput, limits: Limits
    ) -> Outcome:
        rlm = self.served.build_rlm(profile, limits)
        feed = run_feed(rlm.astream(query, context), close=rlm.close)
        return await self.feed_body(run, feed)

    async def feed_body(self, run: Run, feed: RunFeed) -> Outcome:
        """Record ``feed``'s events in ``run`` until its result (a session's ask uses it too)."""
        try:
            async for item in feed:
                if isinstance(item, RLMResult):
                    return _outcome_of(item)
                self._record(run, item)
        finally:
            await feed.aclose()  # on cancel: the run's tree is closed before we go on
        raise RuntimeError("the run feed ended without a result")

    async def _model_body(self, profile: str, messages: list[Message]) -> Outcome:
        lm = self.served.direct_model(profile)
        try:
            done = await lm.acomplete(messages)
        except RecursorError as exc:
            return Outcome("failed", None, "error", UsageReport(), error=str(exc))
        report = UsageReport(total=done.usage, by_model={lm.name: done.usage})
        return Outcome("succeeded", done.text, "final", report)

    def _record(self, run: Run, event: Event) -> None:
        if event.type == "run_started":
            self.metrics.sandbox_starts.inc()
        data = event_dict(event)
        run.events.append(data)
        self.store.add_event(run.id, len(run.events), data)
        run.notify()

    async def _drive(
        self,
        run: Run,
        body: Awaitable[Outcome],
        timeout_s: float | None,
        on_end: Callable[[Outcome], None] | None,
    ) -> None:
        self.store.set_state(run.id, "running")
        try:
            async with asyncio.timeout(timeout_s):
                outcome = await body
        except TimeoutError:
            outcome = Outcome("failed", None, "timeout", UsageReport(), "request wall time ran out")
        except asyncio.CancelledError:
            outcome = Outcome("cancelled", None, "cancelled", UsageReport(), "cancelled")
        except Exception as exc:  # a bug must still end the run's record, not leave it running
            outcome = Outcome(
                "failed", None, "error", UsageReport(), f"{type(exc).__name__}: {exc}"
            )
        finally:
            self.live.pop(run.id, None)
            self.metrics.active.dec()
        self._finish(run, outcome)
        if on_end is not None:
            on_end(outcome)

    def _finish(self, run: Run, outcome: Outcome) -> None:
        total = outcome.usage.total
        self.store.finish(
            run.id,
            outcome.state,
            answer=outcome.answer,
            stop_reason=outcome.stop_reason,
            usage=outcome.usage.to_dict(),
            error=outcome.error,
        )
        m = self.metrics
        m.runs.labels(outcome.state, run.kind).inc()
        m.tokens.labels("input").inc(total.input_tokens)
        m.tokens.labels("output").inc(total.output_tokens)
        if total.cost_usd:
            m.cost.inc(total.cost_usd)
        m.latency.labels(run.kind).observe(time.monotonic() - run.started)
        run.outcome = outcome
        run.notify()

    # -- waiting, following, cancelling -------------------------------------------------------
    async def wait(self, run: Run) -> Outcome:
        assert run.task is not None
        await asyncio.shield(run.task)
        assert run.outcome is not None
        return run.outcome

    async def follow(
        self, run_id: str, after: int = 0
    ) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """The run's events with their sequence numbers, from ``after``, live until it ends."""
        run = self.live.get(run_id)
        if run is None:  # finished (or from before a restart): the store has them all
            for item in self.store.events(run_id, after):
                yield item
            return
        seen = after
        while True:
            changed = run.changed
            while seen < len(run.events):
                seen += 1
                yield seen, run.events[seen - 1]
            if run.outcome is not None:
                return
            await changed.wait()

    async def cancel(self, run_id: str) -> bool:
        """Cancel a live run and wait until it is closed; False if it is not live."""
        run = self.live.get(run_id)
        if run is None or run.task is None:
            return False
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(run.task)
        return True

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new runs, let running ones finish within ``grace_s``, then cancel the rest."""
        self.accepting = False
        tasks = [r.task for r in self.live.values() if r.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)


def _outcome_of(result: RLMResult) -> Outcome:
    return Outcome(
        state="succeeded" if result.answer is not None else "failed",
        answer=result.answer,
        stop_reason=result.stop_reason,
        usage=result.usage,
        error=None if result.error is None else str(result.error),
        trace_run_id=result.run_id,
    )


def whole_usage(report: UsageReport) -> dict[str, Any]:
    """OpenAI's usage object for a whole tree (plus its cost, which OpenAI does not send)."""
    total: Usage = report.total
    return {
        "prompt_tokens": total.input_tokens,
        "completion_tokens": total.output_tokens,
        "total_tokens": total.input_tokens + total.output_tokens,
        "cost_usd": total.cost_usd,
        "calls": total.calls,
    }
