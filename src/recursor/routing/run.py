"""A routed completion: choose the route, run it, and fall back when the breaker trips.

``RLM(route=...)``: ``"direct"``, ``"repl"``, ``"recursive"`` (fixed), ``"auto"`` (the rule of
:mod:`recursor.routing.choose` on one classification call) or a policy file released by
``recursor route release`` (:mod:`recursor.routing.policy`). ``result.route`` says which route
ran and why.

The ``repl`` and ``recursive`` routes are ordinary runs of the RLM's tree at the route's depth.
If such a run stops on ``Limits(max_cost_without_progress_usd=...)`` (:class:`NoProgress`: that
much spent with no change in the root REPL's variables), the summarization baseline of
:mod:`recursor.baseline` answers instead, and ``result.route.fallback_after_usd`` reports what
the stopped run had spent (its usage stays in ``result.usage``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Literal, Protocol

from recursor.baseline import Meter, direct_messages, summarize_answer
from recursor.broker import DepthPlan
from recursor.context import Context, ContextInput, ContextMeta, describe
from recursor.errors import LimitExceeded, OutputValidationError, RecursorError, RunAborted
from recursor.limits import Ledger
from recursor.lm.base import LM, Message
from recursor.output import TypedAnswer
from recursor.result import RLMResult, RouteInfo
from recursor.routing.choose import Choice, fits, route_for
from recursor.routing.classify import Estimate, classify
from recursor.routing.policy import Policy
from recursor.run import run_tree
from recursor.sandbox.base import Environment
from recursor.trace import ModelCalled, RunFinished, RunStarted, Sink, Trace
from recursor.tree import Owner, Tree, Watch
from recursor.usage import Usage, UsageReport

#: the window assumed for the baselines when the model's is unknown
_DEFAULT_WINDOW = 8192


class Routable(Owner, Protocol):
    """What routing reads of the :class:`~recursor.rlm.RLM` (besides what a tree reads)."""

    root: LM
    sub: LM
    route: str | None
    policy: Policy | None
    max_concurrency: int


class AtDepth:
    """An RLM's configuration at another ``max_depth``: the tree a route runs."""

    def __init__(self, rlm: Routable, depth: int) -> None:
        self._rlm = rlm
        self._owned = rlm._owned
        self.plan = DepthPlan(depth)
        self.max_depth = depth
        self.broker_options = rlm.broker_options
        self.models = rlm.models
        self.environment: Environment = rlm.environment
        self.limits = rlm.limits
        # the router decides about errors after the run (a fallback may still answer)
        self.raise_errors = False
        self.sinks: list[Sink] = rlm.sinks
        self.compact_at = rlm.compact_at
        self.prompt_version = rlm.prompt_version
        self.tools = rlm.tools

    def lm_for_depth(self, depth: int) -> LM:
        return self._rlm.lm_for_depth(depth)

    def sub_chars(self, lm: LM) -> int:
        return self._rlm.sub_chars(lm)

    def style_for(self, lm: LM) -> Literal["full", "compact"]:
        return self._rlm.style_for(lm)


def as_text(value: object) -> str:
    """A context value as the one string a direct call or the summarizer reads."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n\n".join(
            f"### {k}\n{v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items()
        )
    if isinstance(value, list):
        return "\n\n".join(v if isinstance(v, str) else json.dumps(v) for v in value)
    return str(value)


def _plus(report: UsageReport, model: str, usage: Usage) -> UsageReport:
    by_model = dict(report.by_model)
    by_model[model] = by_model.get(model, Usage()) + usage
    return UsageReport(total=report.total + usage, by_model=by_model)


def _window(rlm: Routable, lm: LM) -> int | None:
    return rlm.broker_options.context_window(lm)


def decide(rlm: Routable, query: str, meta: ContextMeta) -> tuple[Choice, Estimate | None]:
    """The route of one completion, and the classification it rests on (None for fixed)."""
    mode = rlm.route or "auto"
    recursive_depth = max(1, rlm.max_depth)
    if mode == "direct":
        return Choice("direct", None, "route='direct' was asked for"), None
    if mode == "repl":
        return Choice("repl", 0, "route='repl' was asked for"), None
    if mode == "recursive":
        return Choice("recursive", recursive_depth, "route='recursive' was asked for"), None
    estimate = classify(rlm.sub, query, meta)
    window = _window(rlm, rlm.root)
    fit = fits(meta.total_chars + len(query), window)
    auto = route_for(estimate.complexity, fit, rlm.max_depth)
    if rlm.policy is not None:
        released = rlm.policy.choice(estimate.complexity)
        if released is not None:
            return released, estimate
        auto = Choice(
            auto.route,
            auto.depth,
            f"the policy has no route for {estimate.complexity} questions; auto: {auto.reason}",
        )
    return auto, estimate


def run_routed(
    rlm: Routable,
    query: str,
    context: ContextInput,
    typed: TypedAnswer | None,
    watch: Watch | None = None,
) -> RLMResult:
    """One routed completion (synchronous; ``acompletion`` runs it on a thread); a REPL or
    recursive route's tree is watched by ``watch`` (a stream)."""
    holder = Context(context)
    try:
        value, decode_errors = holder.value()
        meta = describe(value, decode_errors=decode_errors, source=holder.source)
    finally:
        holder.close()
    choice, estimate = decide(rlm, query, meta)
    window = _window(rlm, rlm.root)
    details: dict[str, object] = {
        "context_tokens": -(-meta.total_chars // 3),
        "window": window,
    }
    if estimate is not None and estimate.guessed:
        details["classifier_reply"] = estimate.completion.text[:200]
    if choice.route == "direct":
        result = _direct(rlm, query, as_text(value), typed)
    else:
        tree = Tree(AtDepth(rlm, choice.depth or 0), watch=watch, typed=typed)
        result = run_tree(tree, query, context)
    fallback_after: float | None = None
    reason = choice.reason
    if result.stop_reason == "no_progress":
        fallback_after = result.usage.total.cost_usd or 0.0
        reason += f"; {result.error} — fell back to the summarization baseline"
        result = _fallback(rlm, query, as_text(value), typed, result)
    if estimate is not None:
        result.usage = _plus(result.usage, rlm.sub.name, estimate.completion.usage)
    result.route = RouteInfo(
        route=choice.route,
        reason=reason,
        depth=choice.depth,
        complexity=None if estimate is None else estimate.complexity,
        fallback_after_usd=fallback_after,
        details=details,
    )
    if rlm.raise_errors and result.error is not None:
        raise result.error
    return result


def _fallback(
    rlm: Routable, query: str, text: str, typed: TypedAnswer | None, stopped: RLMResult
) -> RLMResult:
    spent: list[tuple[str, Usage]] = []
    lock = threading.Lock()

    def on_call(model: str, usage: Usage) -> None:  # summaries run on a thread pool
        with lock:
            spent.append((model, usage))

    meter = Meter(on_call)
    windows = (
        _window(rlm, rlm.root) or _DEFAULT_WINDOW,
        _window(rlm, rlm.sub) or _DEFAULT_WINDOW,
    )
    error: RecursorError | None = None
    output = None
    try:
        answer: str | None = summarize_answer(
            meter, query, text, rlm.root, rlm.sub, windows, rlm.max_concurrency
        )
    except RunAborted:
        raise
    except Exception as exc:  # a failed baseline is the result's error, like a failed run's
        answer, error = None, _as_error(exc)
    if answer is not None and typed is not None:
        checked = typed.spec.check(answer)
        if checked.ok:
            output = checked.value
        else:
            error = OutputValidationError(
                "the summarization fallback's answer did not match output_type: "
                + "; ".join(checked.errors),
                errors=list(checked.errors),
                answer=answer,
            )
    usage = stopped.usage
    for model, part in spent:
        usage = _plus(usage, model, part)
    stopped.answer = answer if error is None else None
    stopped.stop_reason = "final" if error is None else "error"
    stopped.error = error
    stopped.output = output
    stopped.usage = usage
    return stopped


def _as_error(exc: Exception) -> RecursorError:
    if isinstance(exc, RecursorError):
        return exc
    from recursor.errors import LMError

    err = LMError(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _direct(rlm: Routable, query: str, text: str, typed: TypedAnswer | None) -> RLMResult:
    """The direct route: one call to the root with the whole context (and, for a typed answer,
    a correction call per rejected reply, at most ``max_retries``)."""
    ledger = Ledger(rlm.limits)
    trace = Trace(rlm.sinks)
    run_id = uuid.uuid4().hex[:12]
    window = _window(rlm, rlm.root) or _DEFAULT_WINDOW
    messages: list[Message] = direct_messages(query, text, window)
    if typed is not None:
        messages[0]["content"] += "\n\n" + typed.spec.direct_instructions()
    trace.emit(
        RunStarted(
            run_id,
            parent_id=None,
            depth=0,
            query=query,
            context_meta={"total_chars": len(text)},
            config={"route": "direct", "root": rlm.root.name},
        )
    )
    answer: str | None = None
    output = None
    error: RecursorError | None = None
    calls = 0
    try:
        for calls in range(1, 2 + (typed.max_retries if typed else 0)):
            ledger.check_model_call()
            t0 = time.perf_counter()
            done = rlm.root.complete(messages)
            ledger.record(rlm.root.name, done.usage)
            trace.emit(
                ModelCalled(
                    run_id,
                    iteration=calls,
                    model=rlm.root.name,
                    new_messages=messages[-1:] if calls > 1 else list(messages),
                    reply=done.text,
                    usage=done.usage.to_dict(),
                    latency_s=time.perf_counter() - t0,
                )
            )
            reply = done.text.strip()
            if typed is None:
                answer = reply
                break
            checked = typed.spec.check(reply)
            if checked.ok:
                answer, output = reply, checked.value
                break
            if calls > typed.max_retries:
                raise OutputValidationError(
                    f"the direct reply did not match output_type after {calls - 1} "
                    f"correction(s): {'; '.join(checked.errors)}",
                    errors=list(checked.errors),
                    answer=reply,
                )
            left = typed.max_retries - calls + 1
            messages += [
                {"role": "assistant", "content": done.text},
                {"role": "user", "content": typed.spec.retry_message(checked, left)},
            ]
    except RunAborted:
        raise
    except Exception as exc:  # the run's error goes in the result, as an RLM run's does
        error = _as_error(exc)
    stop = (
        "final"
        if answer is not None
        else (error.stop_reason if isinstance(error, LimitExceeded) else "error")
    )
    trace.emit(
        RunFinished(
            run_id,
            answer=answer,
            stop_reason=stop,
            iterations=calls,
            usage=ledger.report().to_dict(),
            elapsed_s=ledger.elapsed(),
            error=None if error is None else f"{type(error).__name__}: {error}",
        )
    )
    trace.close()
    return RLMResult(
        answer=answer,
        stop_reason=stop,
        iterations=calls,
        usage=ledger.report(),
        trace=trace,
        elapsed_s=ledger.elapsed(),
        run_id=run_id,
        error=error,
        output=output,
    )
