"""The public front: :class:`RLM`, its result, and the two thin drivers of the engine."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict, TypeVar, Unpack

from recursor import prompts
from recursor._cancel import POLL_S, Cancel, scope
from recursor._closing import Closing
from recursor._lifetime import Owned
from recursor._threads import in_daemon_thread
from recursor.broker import (
    Broker,
    BrokerOptions,
    BrokerRuntime,
    BrokerScope,
    DepthPlan,
    ModelLimits,
    RetryPolicy,
)
from recursor.context import Context, ContextInput
from recursor.engine import Action, Books, CallModel, Engine, Outcome, ReadVar, RunCell
from recursor.errors import (
    IterationLimitExceeded,
    LMError,
    RecursorError,
    RunAborted,
    RunTimeout,
    SubcallError,
)
from recursor.limits import Ledger, Limits
from recursor.lm.base import LM, Completion
from recursor.lm.profile import profile_of
from recursor.lm.registry import DEFAULT_MODEL
from recursor.sandbox.base import Environment, Session, SessionSpec
from recursor.trace import RunFinished, RunStarted, Sink, Trace
from recursor.trace.redact import redact_config, register_secrets_of
from recursor.usage import UsageReport

T = TypeVar("T")

#: characters per token when the root is told a sub-model's capacity: fewer than the broker's
#: 4-a-token estimate, so text cut to the advertised size is not refused for the window, and
#: leaves room in the real tokenizer's count (code and digits tokenize denser than prose)
CHARS_PER_TOKEN = 3
#: the capacity advertised for a sub-model whose window nobody knows
UNKNOWN_SUB_CHARS = 100_000


@dataclass(slots=True)
class RLMResult:
    """What ``completion`` returns; ``answer`` is None unless the run finished by the protocol."""

    answer: str | None
    stop_reason: str  # "final" | "max_iterations" | "budget" | "timeout" | "error"
    iterations: int
    usage: UsageReport
    trace: Trace
    elapsed_s: float
    run_id: str
    error: RecursorError | None = None

    @property
    def ok(self) -> bool:
        return self.stop_reason == "final"


class RLMOptions(TypedDict, total=False):
    """The keywords of :class:`RLM` after ``root, sub, max_depth, environment, limits``; each
    defaults as noted, and the class docstring says what they do."""

    #: per-depth models, by depth (default: ``sub`` below the root)
    models_by_depth: dict[int, LM | str] | None
    #: named models the REPL can pick by name
    models: dict[str, LM | str] | None
    #: model calls at once over the whole tree (default 16)
    max_concurrency: int
    #: per-model slots and rate limits, by model name
    model_limits: dict[str, ModelLimits] | None
    #: retries of 429/5xx/timeouts (default: ``RetryPolicy()``)
    retry: RetryPolicy | None
    #: a bound on one sub-call (default: none)
    subcall_timeout_s: float | None
    #: "string" lists a failed batch item as ``[error: ...]``; "raise" raises in the cell
    subcall_errors: Literal["string", "raise"]
    #: True: per run, in memory; a path: also a shared SQLite file; False: off (default True)
    cache: bool | str | os.PathLike[str]
    #: input-token windows overriding the models' profiles, by model name
    context_windows: dict[str, int] | None
    #: raise the run's error instead of returning it in the result (default False)
    raise_errors: bool
    #: trace sinks; the caller's, flushed not closed
    sinks: list[Sink] | None
    #: "auto" follows the root model's profile (default "auto")
    prompt_style: Literal["auto", "full", "compact"]


class RLM(Closing):
    """A Recursive Language Model: ``completion(query, context)`` like one LM call.

    ``max_depth``: 0 is REPL only; 1 adds ``llm_query`` on ``sub``; >= 2 makes ``rlm_query``
    spawn child RLMs (on the model for their depth: ``models_by_depth`` or ``sub``).

    Sub-calls (:mod:`recursor.broker`): at most ``max_concurrency`` model calls at once over the
    tree; ``model_limits`` adds per-model slots and requests/tokens-per-minute limits
    (:class:`~recursor.broker.ModelLimits`); ``retry`` retries 429/5xx/timeouts with backoff
    (:class:`~recursor.broker.RetryPolicy`); ``subcall_timeout_s`` bounds one call;
    ``subcall_errors="raise"`` makes a batch with a failed item raise in the cell instead of
    listing ``[error: ...]`` strings; ``cache`` answers identical sub-calls once (True: per run,
    in memory; a path: also a SQLite file shared across runs; False: off);
    ``context_windows`` overrides the input-token windows of the models' profiles, by model
    name (:func:`recursor.lm.profile_of`); the root is told each sub-model's capacity from it.

    Lifetime: ``with RLM(...) as rlm:`` (or ``async with``, or :meth:`close`/:meth:`aclose`)
    releases what the RLM created: the environment it made from a name (its spare worker,
    fork server) and the models it made from ``provider:model`` strings (SDK clients, a loaded
    local model). Objects the caller passed in (LMs, an Environment, sinks) stay the caller's;
    their sinks are flushed, not closed. A closed RLM raises :class:`~recursor.errors.RLMClosed`.
    """

    def __init__(
        self,
        root: LM | str | None = None,
        sub: LM | str | None = None,
        *,
        max_depth: int = 1,
        environment: str | Environment = "subprocess",
        limits: Limits | None = None,
        **options: Unpack[RLMOptions],
    ) -> None:
        unknown = sorted(set(options) - set(RLMOptions.__annotations__))
        if unknown:  # what Python says of a keyword the signature lacks
            raise TypeError(f"RLM() got unexpected keyword argument(s): {', '.join(unknown)}")
        max_concurrency = options.get("max_concurrency", 16)
        self.plan = DepthPlan(max_depth)
        #: what this object made from strings, and so releases in close()
        self._owned = Owned()
        self.broker_options = BrokerOptions(
            max_concurrency=max_concurrency,
            model_limits=dict(options.get("model_limits") or {}),
            retry=options.get("retry") or RetryPolicy(),
            subcall_timeout_s=options.get("subcall_timeout_s"),
            subcall_errors=options.get("subcall_errors", "string"),
            cache=options.get("cache", True),
            context_windows=dict(options.get("context_windows") or {}),
        )
        self.root = self._owned.lm(root if root is not None else DEFAULT_MODEL)
        self.sub = self.root if sub is None else self._owned.lm(sub)
        self.models_by_depth = {
            d: self._owned.lm(m) for d, m in (options.get("models_by_depth") or {}).items()
        }
        self.models = {k: self._owned.lm(m) for k, m in (options.get("models") or {}).items()}
        self.max_depth = max_depth
        self.environment = self._owned.environment(
            environment, workers=self.plan.max_workers(max_concurrency)
        )
        self.limits = limits or Limits()
        self.max_concurrency = max_concurrency
        self.raise_errors = options.get("raise_errors", False)
        self.sinks = list(options.get("sinks") or [])
        # Keys the model objects hold are masked in every trace line written (trace/redact.py).
        register_secrets_of(
            [self.root, self.sub, *self.models_by_depth.values(), *self.models.values()]
        )
        self.prompt_style: Literal["auto", "full", "compact"] = options.get("prompt_style", "auto")

    # -- lifetime (what it releases: recursor._lifetime; with/async with: recursor._closing) ----
    def close(self) -> None:
        """Release what this RLM created; stop its running completions. Idempotent."""
        self._owned.close(self.sinks)

    async def aclose(self) -> None:
        """:meth:`close` from async code (also closes its models' async clients of this loop)."""
        await self._owned.aclose(self.sinks)

    def style_for(self, lm: LM) -> Literal["full", "compact"]:
        """ "auto": the style of the model's profile (the compact one for small local models,
        which read a long prompt slowly)."""
        if self.prompt_style != "auto":
            return self.prompt_style
        return profile_of(lm).prompt_style

    def sub_chars(self, lm: LM) -> int:
        """Characters ``lm`` reads per prompt, as the root is told: its window (the override
        or its profile's) at :data:`CHARS_PER_TOKEN`, else :data:`UNKNOWN_SUB_CHARS`."""
        window = self.broker_options.context_window(lm)
        return UNKNOWN_SUB_CHARS if window is None else window * CHARS_PER_TOKEN

    def lm_for_depth(self, depth: int) -> LM:
        if depth in self.models_by_depth:
            return self.models_by_depth[depth]
        return self.root if depth == 0 else self.sub

    # -- the two drivers ------------------------------------------------------------------------
    def completion(self, query: str, context: ContextInput = None) -> RLMResult:
        """Answer ``query`` over ``context``; blocks until the run ends."""
        tree = _Tree(self)
        try:
            node = tree.node(query, context, depth=0, parent_id=None)
            outcome = node.run()
        finally:
            tree.close()
        return tree.result(node, outcome)

    async def acompletion(self, query: str, context: ContextInput = None) -> RLMResult:
        """The same run as :meth:`completion`, awaiting model calls on the event loop."""
        tree = _Tree(self)
        try:
            node = tree.node(query, context, depth=0, parent_id=None)
            try:
                await in_daemon_thread(node.open)
                outcome = await _drive_async(node)
            finally:
                await in_daemon_thread(node.close)
        finally:
            await in_daemon_thread(tree.close)
        return tree.result(node, outcome)


class _Tree:
    """The state one completion shares across its recursion tree."""

    def __init__(self, rlm: RLM) -> None:
        rlm._owned.check_open()
        self.rlm = rlm
        self.ledger = Ledger(rlm.limits)
        self.trace = Trace(rlm.sinks)
        self.fatal: list[BaseException] = []
        #: set when the completion ends (or the RLM closes): every sub-call and child run stops
        self.cancel = Cancel(rlm._owned.cancel)
        #: the sub-call broker's loop, limits and cache, shared by every REPL of the tree
        self.broker = BrokerRuntime(rlm.broker_options)

    def close(self) -> None:
        """Stop the tree's sub-calls and broker loop, and wait for the sinks to get every event
        (they got them while the run went; only what is still queued is waited for)."""
        self.cancel.set("the run is stopping")
        try:
            self.broker.close()
        finally:
            self.trace.close()

    def node(
        self,
        query: str,
        context: ContextInput,
        *,
        depth: int,
        parent_id: str | None,
        cancel: Cancel | None = None,
    ) -> _Node:
        place = _Place(depth, parent_id, cancel or self.cancel)
        return _Node(self, query, Context(context), place)

    def result(self, node: _Node, outcome: Outcome) -> RLMResult:
        self.cancel.set("the run is stopping")
        error = outcome.error
        if outcome.stop_reason == "max_iterations" and error is None:
            error = IterationLimitExceeded(
                f"max_iterations={self.rlm.limits.max_iterations} used and no final answer"
            )
        result = RLMResult(
            answer=outcome.answer,
            stop_reason=outcome.stop_reason,
            iterations=outcome.iterations,
            usage=self.ledger.report(),
            trace=self.trace,
            elapsed_s=self.ledger.elapsed(),
            run_id=node.run_id,
            error=error,
        )
        if self.rlm.raise_errors and error is not None:
            raise error
        return result


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a node sits in the tree."""

    depth: int
    parent_id: str | None
    #: the run's scope for the root; for a child, that of the sub-call that started it
    cancel: Cancel


class _Node:
    """One RLM of the tree (the root or a child): its REPL session and its engine."""

    def __init__(self, tree: _Tree, query: str, context: Context, place: _Place) -> None:
        self.tree = tree
        self.cancel = place.cancel
        self.query = query
        self.context = context
        self.depth = place.depth
        self.parent_id = place.parent_id
        self.run_id = uuid.uuid4().hex[:12]
        self.lm = tree.rlm.lm_for_depth(place.depth)
        self.session: Session | None = None
        self.engine: Engine | None = None

    def open(self) -> None:
        rlm, tree = self.tree.rlm, self.tree
        scope = BrokerScope(
            depth=self.depth,
            plan=rlm.plan,
            run_id=self.run_id,
            ledger=tree.ledger,
            trace=tree.trace,
            runtime=tree.broker,
            lm_for_depth=rlm.lm_for_depth,
            named=rlm.models,
            run_child=self._run_child,
            fatal=tree.fatal,
            cancel=tree.cancel,
        )
        self.session = rlm.environment.open(SessionSpec(self.context, Broker(scope), self.depth))
        meta = self.session.meta
        sub = rlm.lm_for_depth(self.depth + 1)
        settings = prompts.PromptSettings(
            max_iterations=rlm.limits.max_iterations,
            max_output_chars=rlm.limits.max_output_chars,
            llm=rlm.plan.llm_query(self.depth),
            rlm=rlm.plan.rlm_query(self.depth),
            sub_chars=rlm.sub_chars(sub),
            style=rlm.style_for(self.lm),
        )
        self.engine = Engine(
            query=self.query,
            meta=meta,
            settings=settings,
            books=Books(tree.ledger, tree.trace, self.run_id, self.lm.name),
        )
        blob = tree.trace.store_context(self.context, self.depth)
        tree.trace.emit(
            RunStarted(
                self.run_id,
                parent_id=self.parent_id,
                depth=self.depth,
                query=self.query,
                context_meta=meta.to_dict(),
                context_sha256=blob,
                config=redact_config(
                    {
                        "root": self.lm.name,
                        "sub": sub.name,
                        # the window the run enforced, so a replay advertises and refuses alike
                        "sub_context_window": rlm.broker_options.context_window(sub),
                        "max_depth": rlm.max_depth,
                        "environment": rlm.environment.name,
                        "limits": asdict(rlm.limits),
                        "prompt_version": settings.version,
                        "prompt_style": settings.style,
                    }
                ),
            )
        )

    def _run_child(
        self, prompt: str, context: Any, depth: int, cancel: Cancel
    ) -> tuple[str | None, str, str]:
        node = self.tree.node(
            prompt,
            prompt if context is None else context,
            depth=depth,
            parent_id=self.run_id,
            cancel=cancel,
        )
        outcome = node.run()
        return outcome.answer, outcome.stop_reason, node.run_id

    def run(self) -> Outcome:
        """Open the REPL, drive the engine synchronously to its end, close the REPL."""
        try:
            self.open()
            return _drive_sync(self)
        finally:
            self.close()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        self.context.close()

    def finished(self, outcome: Outcome) -> Outcome:
        self.tree.trace.emit(
            RunFinished(
                self.run_id,
                answer=outcome.answer,
                stop_reason=outcome.stop_reason,
                iterations=outcome.iterations,
                usage=self.tree.ledger.report().to_dict() if self.depth == 0 else {},
                elapsed_s=self.tree.ledger.elapsed(),
                error=None
                if outcome.error is None
                else f"{type(outcome.error).__name__}: {outcome.error}",
            )
        )
        return outcome

    def cell_deadline(self) -> float | None:
        return self.tree.ledger.cell_deadline()[0]

    def run_cell(self, action: RunCell) -> Any:
        """Run a cell under this node's scope, so the session stops it if the scope is set."""
        assert self.session is not None
        with scope(self.cancel):
            return self.session.run(
                action.code, deadline=self.cell_deadline(), output_limit=action.output_limit
            )

    def stopped(self) -> RecursorError | None:
        """The error that ends this node's run once its scope is set (a child whose parent cell
        was stopped), thrown into the engine like any failed step."""
        if not self.cancel.is_set():
            return None
        return SubcallError(f"cancelled: {self.cancel.reason}")

    def check_fatal(self) -> None:
        if self.tree.fatal:
            raise self.tree.fatal[0]


def _as_recursor_error(exc: Exception) -> RecursorError:
    if isinstance(exc, RecursorError):
        return exc
    err = LMError(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _timeout(ledger: Ledger) -> RunTimeout:
    exc = RunTimeout(f"timeout_s={ledger.limits.timeout_s} elapsed during a model call")
    ledger.hits.append(exc)
    return exc


def _call_with_deadline(
    fn: Callable[[], T], remaining: float | None, ledger: Ledger, cancel: Cancel | None
) -> T:
    """``fn()``, abandoned at the run deadline (a hung backend must not hang the run) or when
    ``cancel`` is set (a child run whose parent cell was stopped)."""
    if remaining is None and cancel is None:
        return fn()
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:
            box.append((False, exc))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    until = None if remaining is None else time.monotonic() + remaining
    while not box:
        left = None if until is None else until - time.monotonic()
        if left is not None and left <= 0:
            raise _timeout(ledger)
        if cancel is not None and cancel.is_set():
            raise SubcallError(f"cancelled: {cancel.reason}")
        t.join(POLL_S if left is None else min(left, POLL_S))
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _perform_sync(node: _Node, action: Action) -> Any:
    session = node.session
    assert session is not None
    if isinstance(action, CallModel):
        messages = action.messages
        return _call_with_deadline(
            lambda: node.lm.complete(messages),
            node.tree.ledger.remaining(),
            node.tree.ledger,
            # only a child can be stopped while the run goes on (the root's scope is the run's)
            node.cancel if node.depth else None,
        )
    if isinstance(action, RunCell):
        return node.run_cell(action)
    return session.get_var(action.name, deadline=node.cell_deadline())


async def _perform_async(node: _Node, action: Action) -> Any:
    session = node.session
    assert session is not None
    if isinstance(action, CallModel):
        remaining = node.tree.ledger.remaining()
        coro: Coroutine[Any, Any, Completion] = node.lm.acomplete(action.messages)
        try:
            return await asyncio.wait_for(coro, remaining)
        except TimeoutError:
            raise _timeout(node.tree.ledger) from None
    if isinstance(action, RunCell):
        return await in_daemon_thread(node.run_cell, action)
    assert isinstance(action, ReadVar)
    return await in_daemon_thread(session.get_var, action.name, deadline=node.cell_deadline())


def _drive_sync(node: _Node) -> Outcome:
    assert node.engine is not None
    gen = node.engine.steps()
    value: Any = None
    error: RecursorError | None = None
    while True:
        try:
            action = gen.throw(error) if error is not None else gen.send(value)
        except StopIteration as stop:
            return node.finished(stop.value)
        value, error = None, node.stopped()
        if error is not None:
            continue
        try:
            value = _perform_sync(node, action)
        except RunAborted:
            raise
        except Exception as exc:
            error = _as_recursor_error(exc)
        node.check_fatal()


async def _drive_async(node: _Node) -> Outcome:
    assert node.engine is not None
    gen = node.engine.steps()
    value: Any = None
    error: RecursorError | None = None
    while True:
        try:
            action = gen.throw(error) if error is not None else gen.send(value)
        except StopIteration as stop:
            return node.finished(stop.value)
        value, error = None, node.stopped()
        if error is not None:
            continue
        try:
            value = await _perform_async(node, action)
        except RunAborted:
            raise
        except Exception as exc:
            error = _as_recursor_error(exc)
        node.check_fatal()
