"""Serves the sub-calls a REPL makes: ``llm_query``, ``rlm_query`` and their batched forms.

The seam stays blocking: a session calls ``broker(request)`` on a host thread and waits for
the response. Underneath, every item runs as a coroutine on the run tree's one event loop
(:mod:`recursor.broker.runtime`), so a batch of 1,000 remote calls is 1,000 awaits on async SDK
clients, not 1,000 threads. What a call does at this depth (a plain call, a child RLM, or
nothing) is the tree's :class:`~recursor.broker.depth.DepthPlan`. For each plain call, in order
(:mod:`recursor.broker.plain`):

1. the ledger reserves it (``max_subcalls``, per batch: items past the cap get an error each);
2. a prompt larger than the model's context window fails at once, naming its size and the limit;
3. the cache answers identical (model, messages, output parameters) calls, and an identical call
   already in flight is awaited instead of made again (both count as ``cached_calls``, cost 0);
4. the call takes a global slot (``max_concurrency``), its model's slot and rate buckets
   (``model_limits``), and reserves its estimated cost (``max_cost_usd``: an item that does not
   fit is refused with an error, the rest of the batch still runs);
5. it is made with a per-call timeout (``subcall_timeout_s``, never past the run deadline) and
   retried on 429 / 5xx / timeouts / connection errors (``retry``), honouring ``Retry-After``.

Child RLMs (``rlm_query`` below ``max_depth``) are synchronous driver runs: they run on daemon
threads, at most ``max_concurrency`` at a time per depth, all drawing on the one ledger.

Cancellation (:mod:`recursor._cancel`): a call is served under the scope of the cell that made
it and of the run. When either is set (the cell ran out of time, its worker died, the run
ended), the batch's items still queued never start (their ``max_subcalls`` reservation is given
back), the calls in flight are abandoned (not recorded as made: their trace events carry an
error), and child RLMs stop at their next step, their own cells and sub-calls with them.

Every item fills its own :class:`~recursor.broker.items.ItemResult`; the batch's response is
read from those records once all are done. A failed item is an error string in the model's
list (the REPL shows it as ``[error: ...]``); ``subcall_errors="raise"`` makes a batch with a
failed item raise instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from typing import Any

from recursor._cancel import POLL_S, Cancel, current
from recursor._threads import in_daemon_thread
from recursor.broker.items import ItemCancelled, ItemError, ItemResult
from recursor.broker.plain import PlainCalls
from recursor.broker.scope import BrokerScope
from recursor.errors import (
    BatchLimitExceeded,
    ConfigurationError,
    DepthLimitExceeded,
    RunAborted,
    SubcallError,
    SubcallLimitExceeded,
)
from recursor.lm.base import LM
from recursor.sandbox.base import SubcallRequest, SubcallResponse
from recursor.trace import LimitHit, SubcallMade
from recursor.trace.events import prompt_digest, prompt_preview


def response_of(items: list[ItemResult]) -> SubcallResponse:
    """The wire's response (parallel lists) for the batch's records."""
    return SubcallResponse(
        [it.reply for it in items], [it.error for it in items], [it.error_type for it in items]
    )


class Broker:
    def __init__(self, scope: BrokerScope) -> None:
        self.scope = scope
        self.options = scope.runtime.options
        self.plain = PlainCalls(scope)

    # -- the seam: called on a host thread, blocks --------------------------------------------
    def __call__(self, request: SubcallRequest) -> SubcallResponse:
        s = self.scope
        n = len(request.prompts)
        if s.plan.mode(s.depth, request.kind) == "none":
            return SubcallResponse.failure(
                n, s.plan.refusal(s.depth, request.kind), DepthLimitExceeded.__name__
            )
        try:
            lm = self._model(request.model, s.depth + 1)
        except ConfigurationError as exc:
            return SubcallResponse.failure(n, str(exc), ConfigurationError.__name__)
        cap = s.ledger.limits.max_batch
        if cap is not None and n > cap:
            return self._too_big(n, cap)
        items = [ItemResult() for _ in range(n)]
        granted = s.ledger.reserve_subcalls(n)
        if granted < n:
            cap = s.ledger.limits.max_subcalls
            s.trace.emit(
                LimitHit(
                    s.run_id,
                    limit=SubcallLimitExceeded.limit,
                    message=f"max_subcalls={cap}: {n - granted} of {n} requested sub-calls refused",
                )
            )
        for item in items[granted:]:
            item.fail(
                f"max_subcalls={s.ledger.limits.max_subcalls} reached: this item was not run",
                SubcallLimitExceeded.__name__,
            )
        if granted:
            # this call's scope: the run's and, when a session serves it, its cell's
            cancel = Cancel(s.cancel, current())
            self._run_batch(request, lm, items[:granted], cancel=cancel)
        failed = [i for i, it in enumerate(items) if it.error is not None]
        if failed and request.batched and self.options.subcall_errors == "raise":
            # Raised from the handler: an in-process REPL raises it in the cell; a worker
            # session sends it as a response marked ``raised``, which the REPL raises.
            first = failed[0]
            raise SubcallError(
                f"{len(failed)} of {n} batch items failed; item {first}: {items[first].error}"
            )
        return response_of(items)

    def _too_big(self, n: int, cap: int) -> SubcallResponse:
        """A batch over ``max_batch``, refused whole: one error the REPL raises, one trace event
        (never one per item: a forged batch of 200,000 prompts must not become 200,000)."""
        s = self.scope
        message = (
            f"max_batch={cap}: a batch of {n:,} prompts was refused whole; "
            f"send at most {cap:,} prompts per batched call"
        )
        s.ledger.note(BatchLimitExceeded(message))
        s.trace.emit(LimitHit(s.run_id, limit=BatchLimitExceeded.limit, message=message))
        return SubcallResponse.failure(1, message, BatchLimitExceeded.__name__, raised=True)

    def _run_batch(
        self, request: SubcallRequest, lm: LM, items: list[ItemResult], *, cancel: Cancel
    ) -> None:
        s = self.scope
        mode = s.plan.mode(s.depth, request.kind)
        tasks: list[asyncio.Task[Any]] = []

        async def one(i: int, item: ItemResult) -> None:
            try:
                if cancel.is_set():
                    raise ItemCancelled(cancel)
                if mode == "child":
                    ctx = request.contexts[i] if request.contexts else None
                    await self._child(request.prompts[i], ctx, i, item, cancel=cancel)
                else:
                    prompt = self._prompt(request, i)
                    await self.plain.run(lm, prompt, request.kind, i, item)
            except ItemError as exc:
                item.fail(str(exc), exc.error_type)
                item.cancelled_unstarted = isinstance(exc, ItemCancelled)

        async def batch() -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.append(task)
            await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))

        try:
            self._wait(s.runtime.submit(batch()), tasks, cancel)
        except (RuntimeError, concurrent.futures.CancelledError, asyncio.CancelledError):
            pass  # cancelled, or the run ended under us: items without an outcome say so below
        self._settle(items, cancel)

    def _wait(
        self,
        future: concurrent.futures.Future[Any],
        tasks: list[asyncio.Task[Any]],
        cancel: Cancel,
    ) -> None:
        """Wait for the batch on the loop; when ``cancel`` is set, cancel it there and wait
        for it to unwind, so no item writes its outcome after we have read them all."""
        stopping = False
        while True:
            try:
                future.result(timeout=POLL_S)
                return
            except concurrent.futures.TimeoutError:
                if cancel.is_set() and tasks and not stopping:
                    stopping = True
                    self.scope.runtime.call_soon(tasks[0].cancel)

    def _settle(self, items: list[ItemResult], cancel: Cancel) -> None:
        """Items without an outcome were cancelled; give back the sub-calls never made."""
        for item in items:
            if not item.done:
                item.fail(
                    f"cancelled: {cancel.reason or 'the run is stopping'}", SubcallError.__name__
                )
                item.cancelled_unstarted = not item.started
        unstarted = sum(item.cancelled_unstarted for item in items)
        if unstarted:
            # never made: they must not use up max_subcalls for the cells that come after
            self.scope.ledger.release_subcalls(unstarted)

    def _model(self, model: str | None, depth: int) -> LM:
        s = self.scope
        if model is None:
            return s.lm_for_depth(depth)
        if model in s.named:
            return s.named[model]
        known = sorted({*s.named, s.lm_for_depth(depth).name})
        for lm in (s.lm_for_depth(depth), *s.named.values()):
            if lm.name == model:
                return lm
        raise ConfigurationError(f"unknown model {model!r} for llm_query; configured: {known}")

    @staticmethod
    def _prompt(request: SubcallRequest, i: int) -> str:
        prompt = request.prompts[i]
        ctx = request.contexts[i] if request.contexts else None
        if request.kind == "rlm" and ctx is not None:
            text = ctx if isinstance(ctx, str) else json.dumps(ctx, ensure_ascii=False, default=str)
            prompt = f"{prompt}\n\nContext:\n{text}"
        return prompt

    # -- child runs -----------------------------------------------------------------------------
    async def _child(
        self, prompt: str, context: Any, index: int, item: ItemResult, *, cancel: Cancel
    ) -> None:
        s = self.scope
        depth = s.depth + 1
        async with s.runtime.child_slots(depth):
            if cancel.is_set():
                raise ItemCancelled(cancel)
            t0 = time.perf_counter()
            item.attempts = 1
            try:
                # the child gets this call's scope: if it is set, the child stops by itself
                # (awaiting it is cancelled at once; its thread cannot be)
                answer, reason, child_id = await in_daemon_thread(
                    s.run_child, prompt, context, depth, cancel
                )
            except RunAborted as exc:
                s.fatal.append(exc)
                raise ItemError(str(exc), SubcallError.__name__) from exc
            except Exception as exc:
                raise ItemError(f"{type(exc).__name__}: {exc}", SubcallError.__name__) from exc
        error = None if answer is not None else f"child RLM stopped ({reason}) without an answer"
        s.trace.emit(
            SubcallMade(
                s.run_id,
                depth=depth,
                kind="rlm",
                model=s.lm_for_depth(depth).name,
                index=index,
                prompt_chars=len(prompt),
                reply_chars=len(answer or ""),
                error=error,
                usage={},
                latency_s=time.perf_counter() - t0,
                child_run_id=child_id,
                reply=answer or "",
                prompt=prompt_preview(prompt),
                prompt_sha256=prompt_digest(prompt),
            )
        )
        if answer is None:
            raise ItemError(error or "", SubcallError.__name__)
        item.reply = answer
