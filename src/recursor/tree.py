"""One completion's recursion tree: the shared books (ledger, trace, broker, cancel scope), its
nodes (the root RLM and its children, each with a REPL session and an engine), and the two thin
drivers that perform the engine's actions, synchronously or on an event loop.

:class:`~recursor.rlm.RLM` holds the configuration and builds a :class:`Tree` per completion;
what the tree reads of it is the :class:`Owner` protocol (this module must not import rlm.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, TypeVar

from recursor import prompts
from recursor._cancel import POLL_S, Cancel, scope
from recursor._lifetime import Owned
from recursor._threads import in_daemon_thread
from recursor.broker import Broker, BrokerOptions, BrokerRuntime, BrokerScope, DepthPlan
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
from recursor.result import RLMResult
from recursor.sandbox.base import Environment, Session, SessionSpec
from recursor.strategy import classify
from recursor.trace import RunFinished, RunStarted, Sink, Trace
from recursor.trace.redact import redact_config

T = TypeVar("T")


class Owner(Protocol):
    """What a tree reads of the :class:`~recursor.rlm.RLM` that made it."""

    _owned: Owned
    plan: DepthPlan
    broker_options: BrokerOptions
    models: dict[str, LM]
    max_depth: int
    environment: Environment
    limits: Limits
    raise_errors: bool
    sinks: list[Sink]
    #: prompts.VERSIONS
    prompt_version: str

    def lm_for_depth(self, depth: int) -> LM: ...

    def sub_chars(self, lm: LM) -> int: ...

    def style_for(self, lm: LM) -> Literal["full", "compact"]: ...


class Tree:
    """The state one completion shares across its recursion tree."""

    def __init__(self, rlm: Owner) -> None:
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
    ) -> Node:
        place = Place(depth, parent_id, cancel or self.cancel)
        return Node(self, query, Context(context), place)

    def result(self, node: Node, outcome: Outcome) -> RLMResult:
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
class Place:
    """Where a node sits in the tree."""

    depth: int
    parent_id: str | None
    #: the run's scope for the root; for a child, that of the sub-call that started it
    cancel: Cancel


class Node:
    """One RLM of the tree (the root or a child): its REPL session and its engine."""

    def __init__(self, tree: Tree, query: str, context: Context, place: Place) -> None:
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
            version=rlm.prompt_version,
            kind=classify(self.query),
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
                        "prompt_kind": settings.kind,
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
            return drive_sync(self)
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


def _perform_sync(node: Node, action: Action) -> Any:
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


async def _perform_async(node: Node, action: Action) -> Any:
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


def drive_sync(node: Node) -> Outcome:
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


async def drive_async(node: Node) -> Outcome:
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
