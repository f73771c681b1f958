"""Serves the sub-calls a REPL makes: ``llm_query``, ``rlm_query`` and their batched forms.

The broker routes by depth (a plain call, a child RLM, or the plain-call fallback at the last
level), reserves every sub-call on the run's ledger before it starts (a batch that would pass
``max_subcalls`` runs only what fits and returns an error for each item it refused), and runs
batch items concurrently up to ``max_concurrency``. Threads, because model backends and child
runs are blocking calls made from the worker's service threads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recursor.errors import (
    ConfigurationError,
    DepthLimitExceeded,
    LimitExceeded,
    RecursorError,
    ScriptExhausted,
    SubcallError,
    SubcallLimitExceeded,
)
from recursor.limits import Ledger
from recursor.lm.base import LM
from recursor.sandbox.base import SubcallRequest, SubcallResponse
from recursor.trace import LimitHit, SubcallMade, Trace
from recursor.trace.events import prompt_digest, prompt_preview
from recursor.usage import Usage, estimate_tokens

#: runs a child RLM: (prompt, context, depth) -> (answer or None, stop_reason, child run id)
ChildRunner = Callable[[str, Any, int], tuple[str | None, str, str]]


@dataclass(slots=True)
class BrokerScope:
    """What a broker serving one REPL needs to know about its run tree."""

    depth: int
    max_depth: int
    run_id: str
    ledger: Ledger
    trace: Trace
    max_concurrency: int
    #: the model for a depth; named models for ``llm_query(..., model=NAME)``
    lm_for_depth: Callable[[int], LM]
    named: dict[str, LM]
    run_child: ChildRunner
    #: set when something happened that must fail the whole run (a ScriptedLM ran out)
    fatal: list[BaseException]
    cancel: threading.Event


class _ItemError(Exception):
    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class Broker:
    def __init__(self, scope: BrokerScope) -> None:
        self.scope = scope

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
        results: list[str | None] = [None] * n
        errors: list[str | None] = [None] * n
        types: list[str | None] = [None] * n
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

        def one(i: int) -> None:
            try:
                if s.cancel.is_set():
                    raise _ItemError("cancelled: the run is stopping", "SubcallError")
                if request.kind == "rlm" and target < s.max_depth:
                    ctx = request.contexts[i] if request.contexts else None
                    results[i] = self._child(request.prompts[i], ctx, target, i)
                else:
                    results[i] = self._plain(lm, self._prompt(request, i), request.kind, i)
            except _ItemError as exc:
                errors[i], types[i] = str(exc), exc.error_type

        self._run_all(one, granted)
        return SubcallResponse(results, errors, types)

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

    def _run_all(self, fn: Callable[[int], None], count: int) -> None:
        if count <= 1:
            for i in range(count):
                fn(i)
            return
        lock = threading.Lock()
        it = iter(range(count))

        def worker() -> None:
            while True:
                with lock:
                    i = next(it, None)
                if i is None:
                    return
                fn(i)

        threads = [
            threading.Thread(target=worker, daemon=True)
            for _ in range(min(count, self.scope.max_concurrency))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _plain(self, lm: LM, prompt: str, kind: str, index: int) -> str:
        s = self.scope
        messages = [{"role": "user", "content": prompt}]
        t0 = time.perf_counter()
        usage, reply, error = Usage(), "", None
        try:
            s.ledger.check_model_call(estimate_tokens(prompt) + 4)
            completion = lm.complete(messages)
            usage, reply = completion.usage, completion.text
            s.ledger.record(lm.name, usage)
            return reply
        except ScriptExhausted as exc:
            s.fatal.append(exc)
            error = str(exc)
            raise _ItemError(error, "SubcallError") from exc
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
                    reply_chars=len(reply),
                    error=error,
                    usage=usage.to_dict(),
                    latency_s=time.perf_counter() - t0,
                    reply=reply,
                    prompt=prompt_preview(prompt),
                    prompt_sha256=prompt_digest(prompt),
                )
            )

    def _child(self, prompt: str, context: Any, depth: int, index: int) -> str:
        s = self.scope
        t0 = time.perf_counter()
        answer, reason, child_id = s.run_child(prompt, context, depth)
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
