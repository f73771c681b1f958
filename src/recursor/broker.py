"""Serves the sub-calls a REPL makes: ``llm_query``, ``rlm_query`` and their batched forms.

The seam stays blocking: a session calls ``broker(request)`` on a host thread and waits for
the response. Underneath, every item runs as a coroutine on the run tree's one event loop
(:mod:`recursor._broker_runtime`), so a batch of 1,000 remote calls is 1,000 awaits on async SDK
clients, not 1,000 threads. For each plain call, in order:

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

A failed item is an error string in the model's list (the REPL shows it as ``[error: ...]``);
``subcall_errors="raise"`` makes a batch with a failed item raise instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from recursor._broker_cache import cache_key, output_params
from recursor._broker_policy import (
    DEFAULT_OUTPUT_TOKENS_ESTIMATE,
    ModelLimits,
    RetryPolicy,
    is_retryable,
)
from recursor._broker_runtime import BrokerOptions, BrokerRuntime
from recursor._cancel import POLL_S, Cancel, current
from recursor._threads import in_daemon_thread
from recursor.errors import (
    ConfigurationError,
    ContextWindowExceeded,
    CostLimitExceeded,
    DepthLimitExceeded,
    LimitExceeded,
    LMError,
    LMTimeoutError,
    RecursorError,
    RunAborted,
    RunTimeout,
    SubcallError,
    SubcallLimitExceeded,
)
from recursor.limits import Ledger
from recursor.lm.base import LM, Completion, Message
from recursor.sandbox.base import SubcallRequest, SubcallResponse
from recursor.trace import LimitHit, SubcallMade, Trace
from recursor.trace.events import prompt_digest, prompt_preview
from recursor.usage import Usage, estimate_message_tokens

__all__ = [
    "Broker",
    "BrokerOptions",
    "BrokerRuntime",
    "BrokerScope",
    "ModelLimits",
    "RetryPolicy",
]

#: runs a child RLM: (prompt, context, depth, cancel scope) -> (answer or None, stop_reason,
#: child run id); the child stops early once the scope is set
ChildRunner = Callable[[str, Any, int, Cancel], tuple[str | None, str, str]]


@dataclass(slots=True)
class BrokerScope:
    """What a broker serving one REPL needs to know about its run tree."""

    depth: int
    max_depth: int
    run_id: str
    ledger: Ledger
    trace: Trace
    #: the tree's loop, limits and cache (shared by every REPL of the tree)
    runtime: BrokerRuntime
    #: the model for a depth; named models for ``llm_query(..., model=NAME)``
    lm_for_depth: Callable[[int], LM]
    named: dict[str, LM]
    run_child: ChildRunner
    #: set when something happened that must fail the whole run (a ScriptedLM ran out)
    fatal: list[BaseException]
    #: the run's scope (set when the completion ends); a call also stops with its cell's
    cancel: Cancel


class _ItemError(Exception):
    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class _ItemCancelled(_ItemError):
    """The item's cell or run was stopped before the item got to its model or child run."""

    def __init__(self, cancel: Cancel) -> None:
        super().__init__(f"cancelled: {cancel.reason}", SubcallError.__name__)


@dataclass(slots=True)
class _Call:
    """What one item did, for its trace event (and whether it got as far as the model)."""

    usage: Usage
    reply: str = ""
    cached: bool = False
    attempts: int = 0

    @property
    def started(self) -> bool:
        return self.attempts > 0 or self.cached


@dataclass(slots=True)
class _Batch:
    """The outcome of a batch, item by item (filled on the loop, read after it is done)."""

    results: list[str | None]
    errors: list[str | None]
    types: list[str | None]

    @classmethod
    def of(cls, n: int) -> _Batch:
        return cls([None] * n, [None] * n, [None] * n)


def _cached_usage(lm: LM) -> Usage:
    """A call answered from the cache: counted, marked, and free (``cost_usd`` 0 when the model
    is priced; unknown stays unknown, so an unpriced tree's cost does not turn into $0)."""
    priced = getattr(lm, "pricing", None) is not None
    return Usage(calls=1, cached_calls=1, cost_usd=0.0 if priced else None)


def _max_output_tokens(lm: LM) -> int:
    value = output_params(lm).get("max_tokens")
    return value if isinstance(value, int) and value > 0 else DEFAULT_OUTPUT_TOKENS_ESTIMATE


class Broker:
    def __init__(self, scope: BrokerScope) -> None:
        self.scope = scope
        self.options = scope.runtime.options

    # -- the seam: called on a host thread, blocks --------------------------------------------
    def __call__(self, request: SubcallRequest) -> SubcallResponse:
        s = self.scope
        n = len(request.prompts)
        target = s.depth + 1
        name = "llm_query" if request.kind == "llm" else "rlm_query"
        if target > s.max_depth:
            return SubcallResponse.failure(
                n,
                f"{name} is not available: this RLM runs with max_depth={s.max_depth} "
                "(REPL only); solve the task with code",
                DepthLimitExceeded.__name__,
            )
        try:
            lm = self._model(request.model, target)
        except ConfigurationError as exc:
            return SubcallResponse.failure(n, str(exc), ConfigurationError.__name__)
        out = _Batch.of(n)
        results, errors, types = out.results, out.errors, out.types
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
        for i in range(granted, n):
            errors[i] = (
                f"max_subcalls={s.ledger.limits.max_subcalls} reached: this item was not run"
            )
            types[i] = SubcallLimitExceeded.__name__
        if granted:
            # this call's scope: the run's and, when a session serves it, its cell's
            cancel = Cancel(s.cancel, current())
            self._run_batch(request, lm, target, granted, out, cancel=cancel)
        failed = sum(e is not None for e in errors)
        if failed and request.batched and self.options.subcall_errors == "raise":
            # Raised from the handler: an in-process REPL raises it in the cell; a worker
            # session sends it as a response marked ``raised``, which the REPL raises.
            first = next(i for i, e in enumerate(errors) if e is not None)
            raise SubcallError(f"{failed} of {n} batch items failed; item {first}: {errors[first]}")
        return SubcallResponse(results, errors, types)

    def _run_batch(
        self,
        request: SubcallRequest,
        lm: LM,
        target: int,
        count: int,
        out: _Batch,
        *,
        cancel: Cancel,
    ) -> None:
        results, errors, types = out.results, out.errors, out.types
        calls = [_Call(Usage()) for _ in range(count)]
        unstarted = [False] * count
        tasks: list[asyncio.Task[Any]] = []

        async def one(i: int) -> None:
            try:
                if cancel.is_set():
                    raise _ItemCancelled(cancel)
                if request.kind == "rlm" and target < self.scope.max_depth:
                    ctx = request.contexts[i] if request.contexts else None
                    results[i] = await self._child(
                        request.prompts[i], ctx, target, i, call=calls[i], cancel=cancel
                    )
                else:
                    prompt = self._prompt(request, i)
                    results[i] = await self._plain(lm, prompt, request.kind, i, calls[i])
            except _ItemError as exc:
                errors[i], types[i] = str(exc), exc.error_type
                unstarted[i] = isinstance(exc, _ItemCancelled)

        async def batch() -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.append(task)
            await asyncio.gather(*(one(i) for i in range(count)))

        rt = self.scope.runtime
        try:
            future = rt.submit(batch())
            stopping = False
            while True:
                try:
                    future.result(timeout=POLL_S)
                    break
                except concurrent.futures.TimeoutError:
                    if cancel.is_set() and tasks and not stopping:
                        # cancel the batch on the loop and wait for it to unwind, so no item
                        # writes its outcome after we have read them all
                        stopping = True
                        rt.call_soon(tasks[0].cancel)
        except (RuntimeError, concurrent.futures.CancelledError, asyncio.CancelledError):
            pass  # cancelled, or the run ended under us: items without an outcome say so below
        for i in range(count):
            if results[i] is None and errors[i] is None:
                errors[i] = f"cancelled: {cancel.reason or 'the run is stopping'}"
                types[i] = SubcallError.__name__
                unstarted[i] = not calls[i].started
        if any(unstarted):
            # never made: they must not use up max_subcalls for the cells that come after
            self.scope.ledger.release_subcalls(sum(unstarted))

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

    # -- plain calls (on the loop) --------------------------------------------------------------
    async def _plain(self, lm: LM, prompt: str, kind: str, index: int, call: _Call) -> str:
        s = self.scope
        messages: list[Message] = [{"role": "user", "content": prompt}]
        t0 = time.perf_counter()
        error: str | None = None
        try:
            await self._answer(lm, messages, call)
            return call.reply
        except asyncio.CancelledError:
            # stopped with its cell or run: not a call made (its reply, if any, is dropped)
            call.reply, error = "", "cancelled" + ("" if call.started else " before it started")
            raise
        except RunAborted as exc:
            s.fatal.append(exc)
            error = str(exc)
            raise _ItemError(error, SubcallError.__name__) from exc
        except LimitExceeded as exc:
            error = str(exc)
            s.trace.emit(LimitHit(s.run_id, limit=exc.limit, message=error))
            raise _ItemError(error, type(exc).__name__) from exc
        except RecursorError as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise _ItemError(error, type(exc).__name__) from exc
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise _ItemError(error, SubcallError.__name__) from exc
        finally:
            s.trace.emit(
                SubcallMade(
                    s.run_id,
                    depth=s.depth + 1,
                    kind=kind,
                    model=lm.name,
                    index=index,
                    prompt_chars=len(prompt),
                    reply_chars=len(call.reply),
                    error=error,
                    usage=call.usage.to_dict(),
                    latency_s=time.perf_counter() - t0,
                    reply=call.reply,
                    prompt=prompt_preview(prompt),
                    prompt_sha256=prompt_digest(prompt),
                    cached=call.cached,
                    attempts=call.attempts,
                )
            )

    async def _answer(self, lm: LM, messages: list[Message], call: _Call) -> None:
        """Fill ``call`` from the cache, an identical call in flight, or the model."""
        rt, ledger = self.scope.runtime, self.scope.ledger
        tokens = estimate_message_tokens(messages)
        window = self.options.context_window(lm)
        if window is not None and tokens > window:
            chars = sum(len(m["content"]) for m in messages)
            raise ContextWindowExceeded(
                f"the prompt is ~{tokens:,} tokens ({chars:,} characters) but {lm.name} "
                f"accepts at most {window:,} input tokens; send smaller chunks "
                "(e.g. split the text and use llm_query_batched)"
            )
        cache = rt.cache
        key = cache_key(lm, messages) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is None and key in rt.inflight:
                hit = await asyncio.shield(rt.inflight[key])
            if hit is not None:
                call.reply, call.cached, call.usage = hit, True, _cached_usage(lm)
                ledger.record(lm.name, call.usage)
                return
            shared: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            rt.inflight[key] = shared
        try:
            completion = await self._call(lm, messages, tokens, call)
        except BaseException as exc:
            if key is not None:
                rt.inflight.pop(key, None)
                shared.set_exception(exc if isinstance(exc, Exception) else SubcallError(str(exc)))
                shared.exception()  # retrieved: waiters re-raise it; no "never retrieved" log
            raise
        call.reply, call.usage = completion.text, completion.usage
        if cache is not None and key is not None:
            rt.inflight.pop(key, None)
            shared.set_result(completion.text)
            # a cache that cannot be written (disk full, a locked file) must not fail the call
            with contextlib.suppress(sqlite3.Error):
                cache.put(key, lm.name, completion.text)

    async def _call(self, lm: LM, messages: list[Message], tokens: int, call: _Call) -> Completion:
        """One model call under the limits, with retries; its usage recorded on the ledger."""
        rt, ledger = self.scope.runtime, self.scope.ledger
        gate = rt.gate(lm.name)
        out_tokens = _max_output_tokens(lm)
        async with AsyncExitStack() as slots:
            # the model's slot first: a call queued for a busy model must not hold a global
            # slot that a call to another model could use
            if gate.semaphore is not None:
                await slots.enter_async_context(gate.semaphore)
            await slots.enter_async_context(rt.global_slots())
            ledger.check_model_call(tokens)
            price = getattr(lm, "pricing", None)
            reserved = price.cost(tokens, out_tokens) if price is not None else 0.0
            if reserved and not ledger.reserve_cost(reserved):
                cap = ledger.limits.max_cost_usd
                exc = CostLimitExceeded(
                    f"max_cost_usd={cap}: this item (~${reserved:.6f} reserved for ~{tokens:,} "
                    f"input + {out_tokens:,} output tokens) does not fit what is left; not run"
                )
                ledger.note(exc)
                raise exc
            try:
                return await self._attempts(lm, messages, tokens + out_tokens, call, gate)
            finally:
                ledger.release_cost(reserved)
        raise AssertionError("unreachable")  # pragma: no cover (mypy: async with may swallow)

    async def _attempts(
        self, lm: LM, messages: list[Message], tokens: int, call: _Call, gate: Any
    ) -> Completion:
        ledger, opts = self.scope.ledger, self.options
        policy = opts.retry
        for attempt in range(policy.max_attempts):
            await gate.admit(tokens)
            remaining = ledger.remaining()
            limits = [t for t in (opts.subcall_timeout_s, remaining) if t is not None]
            timeout = min(limits) if limits else None
            call.attempts = attempt + 1
            try:
                if timeout is None:
                    completion = await lm.acomplete(messages)
                else:
                    completion = await asyncio.wait_for(lm.acomplete(messages), timeout)
            except TimeoutError:
                if opts.subcall_timeout_s is None or timeout != opts.subcall_timeout_s:
                    expired = RunTimeout(
                        f"timeout_s={ledger.limits.timeout_s} elapsed during a sub-call"
                    )
                    ledger.note(expired)
                    raise expired from None
                error: LMError = LMTimeoutError(
                    f"{lm.name}: no reply within subcall_timeout_s={opts.subcall_timeout_s}"
                )
            except LMError as exc:
                error = exc
            else:
                ledger.record(lm.name, completion.usage)
                return completion
            if not is_retryable(error) or attempt + 1 >= policy.max_attempts:
                if attempt:
                    raise type(error)(f"{error} (after {attempt + 1} attempts)") from error
                raise error
            delay = policy.delay(attempt, error)
            remaining = ledger.remaining()
            if remaining is not None and delay >= remaining:
                raise error
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- child runs -----------------------------------------------------------------------------
    async def _child(
        self, prompt: str, context: Any, depth: int, index: int, *, call: _Call, cancel: Cancel
    ) -> str:
        s = self.scope
        async with s.runtime.child_slots(depth):
            if cancel.is_set():
                raise _ItemCancelled(cancel)
            t0 = time.perf_counter()
            call.attempts = 1
            try:
                # the child gets this call's scope: if it is set, the child stops by itself
                # (awaiting it is cancelled at once; its thread cannot be)
                answer, reason, child_id = await in_daemon_thread(
                    s.run_child, prompt, context, depth, cancel
                )
            except RunAborted as exc:
                s.fatal.append(exc)
                raise _ItemError(str(exc), SubcallError.__name__) from exc
            except Exception as exc:
                raise _ItemError(f"{type(exc).__name__}: {exc}", SubcallError.__name__) from exc
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
            raise _ItemError(error or "", SubcallError.__name__)
        return answer
