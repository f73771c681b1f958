"""One plain sub-call (``llm_query``, or ``rlm_query`` at the last level), on the broker's loop.

In order: a prompt larger than the model's window fails at once, naming its size and the limit
(the window is the model's profile, or ``RLM(context_windows=...)``), before anything is loaded
or sent; the cache answers identical (model, messages, cache parameters) calls, and an identical
call already in flight is awaited instead of made again (both count as ``cached_calls``, cost
0); the call takes its model's slot and rate buckets and a global slot, reserves its estimated
cost, and is made with a per-call timeout and retries. Every call, answered or not, is one
``SubcallMade`` trace event.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from contextlib import AsyncExitStack

from recursor.broker.cache import cache_key
from recursor.broker.items import ItemError, ItemResult
from recursor.broker.policy import DEFAULT_OUTPUT_TOKENS_ESTIMATE, ModelGate, is_retryable
from recursor.broker.scope import BrokerScope
from recursor.errors import (
    ContextWindowExceeded,
    CostLimitExceeded,
    LimitExceeded,
    LMError,
    LMTimeoutError,
    RecursorError,
    RunAborted,
    RunTimeout,
    SubcallError,
)
from recursor.lm.base import LM, Completion, Message
from recursor.lm.profile import profile_of
from recursor.trace import LimitHit, SubcallMade
from recursor.trace.events import prompt_digest, prompt_preview
from recursor.usage import Usage, estimate_message_tokens


def cached_usage(lm: LM) -> Usage:
    """A call answered from the cache: counted, marked, and free (``cost_usd`` 0 when the model
    is priced; unknown stays unknown, so an unpriced tree's cost does not turn into $0)."""
    priced = profile_of(lm).pricing is not None
    return Usage(calls=1, cached_calls=1, cost_usd=0.0 if priced else None)


def max_output_tokens(lm: LM) -> int:
    """Output tokens a call to ``lm`` is charged for ahead (its cap, or an estimate)."""
    cap = profile_of(lm).max_output_tokens
    return cap if cap is not None and cap > 0 else DEFAULT_OUTPUT_TOKENS_ESTIMATE


class PlainCalls:
    """Makes the plain calls of one REPL's broker."""

    def __init__(self, scope: BrokerScope) -> None:
        self.scope = scope
        self.options = scope.runtime.options

    async def run(self, lm: LM, prompt: str, kind: str, index: int, item: ItemResult) -> None:
        """Fill ``item`` with the reply to ``prompt``; a failure raises :class:`ItemError`."""
        s = self.scope
        messages: list[Message] = [{"role": "user", "content": prompt}]
        t0 = time.perf_counter()
        error: str | None = None
        try:
            await self._answer(lm, messages, item)
        except asyncio.CancelledError:
            # stopped with its cell or run: not a call made (its reply, if any, is dropped)
            item.reply = None
            error = "cancelled" + ("" if item.started else " before it started")
            raise
        except RunAborted as exc:
            s.fatal.append(exc)
            error = str(exc)
            raise ItemError(error, SubcallError.__name__) from exc
        except LimitExceeded as exc:
            error = str(exc)
            s.trace.emit(LimitHit(s.run_id, limit=exc.limit, message=error))
            raise ItemError(error, type(exc).__name__) from exc
        except RecursorError as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise ItemError(error, type(exc).__name__) from exc
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise ItemError(error, SubcallError.__name__) from exc
        finally:
            reply = item.reply or ""
            s.trace.emit(
                SubcallMade(
                    s.run_id,
                    depth=s.depth + 1,
                    kind=kind,
                    model=lm.name,
                    index=index,
                    prompt_chars=len(prompt),
                    reply_chars=len(reply),
                    error=error,
                    usage=item.usage.to_dict(),
                    latency_s=time.perf_counter() - t0,
                    reply=reply,
                    prompt=prompt_preview(prompt),
                    prompt_sha256=prompt_digest(prompt),
                    cached=item.cached,
                    attempts=item.attempts,
                )
            )

    def _check_window(self, lm: LM, messages: list[Message], tokens: int) -> None:
        window = self.options.context_window(lm)
        if window is not None and tokens > window:
            chars = sum(len(m["content"]) for m in messages)
            raise ContextWindowExceeded(
                f"the prompt is ~{tokens:,} tokens ({chars:,} characters) but {lm.name} "
                f"accepts at most {window:,} input tokens; send smaller chunks "
                "(e.g. split the text and use llm_query_batched)"
            )

    async def _answer(self, lm: LM, messages: list[Message], item: ItemResult) -> None:
        """Fill ``item`` from the cache, an identical call in flight, or the model."""
        rt, ledger = self.scope.runtime, self.scope.ledger
        tokens = estimate_message_tokens(messages)
        self._check_window(lm, messages, tokens)
        cache = rt.cache
        key = cache_key(lm, messages) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is None and key in rt.inflight:
                hit = await asyncio.shield(rt.inflight[key])
            if hit is not None:
                item.reply, item.cached, item.usage = hit, True, cached_usage(lm)
                ledger.record(lm.name, item.usage)
                return
            shared: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            rt.inflight[key] = shared
        try:
            completion = await self._call(lm, messages, tokens, item)
        except BaseException as exc:
            if key is not None:
                rt.inflight.pop(key, None)
                shared.set_exception(exc if isinstance(exc, Exception) else SubcallError(str(exc)))
                shared.exception()  # retrieved: waiters re-raise it; no "never retrieved" log
            raise
        item.reply, item.usage = completion.text, completion.usage
        if cache is not None and key is not None:
            rt.inflight.pop(key, None)
            shared.set_result(completion.text)
            # a cache that cannot be written (disk full, a locked file) must not fail the call
            with contextlib.suppress(sqlite3.Error):
                cache.put(key, lm.name, completion.text)

    async def _call(
        self, lm: LM, messages: list[Message], tokens: int, item: ItemResult
    ) -> Completion:
        """One model call under the limits, with retries; its usage recorded on the ledger."""
        rt, ledger = self.scope.runtime, self.scope.ledger
        gate = rt.gate(lm.name)
        out_tokens = max_output_tokens(lm)
        async with AsyncExitStack() as slots:
            # the model's slot first: a call queued for a busy model must not hold a global
            # slot that a call to another model could use
            if gate.semaphore is not None:
                await slots.enter_async_context(gate.semaphore)
            await slots.enter_async_context(rt.global_slots())
            ledger.check_model_call(tokens)
            price = profile_of(lm).pricing
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
                return await self._attempts(lm, messages, tokens + out_tokens, item, gate)
            finally:
                ledger.release_cost(reserved)
        raise AssertionError("unreachable")  # pragma: no cover (mypy: async with may swallow)

    async def _attempts(
        self, lm: LM, messages: list[Message], tokens: int, item: ItemResult, gate: ModelGate
    ) -> Completion:
        ledger, opts = self.scope.ledger, self.options
        policy = opts.retry
        for attempt in range(policy.max_attempts):
            await gate.admit(tokens)
            remaining = ledger.remaining()
            limits = [t for t in (opts.subcall_timeout_s, remaining) if t is not None]
            timeout = min(limits) if limits else None
            item.attempts = attempt + 1
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
