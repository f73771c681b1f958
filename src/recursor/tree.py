"""One completion's recursion tree: the shared books (ledger, trace, broker, cancel scope), its
nodes (the root RLM and its children, each with a REPL session and an engine), and the two thin
drivers that perform the engine's actions, synchronously or on an event loop.

:class:`~recursor.rlm.RLM` holds the configuration and builds a :class:`Tree` per completion;
what the tree reads of it is the :class:`Owner` protocol (this module must not import rlm.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, TypeVar

from recursor import prompts
from recursor._cancel import Cancel, scope
from recursor._deadline import as_recursor_error, call_with_deadline, deadline_passed
from recursor._lifetime import Owned
from recursor._threads import in_daemon_thread, on_late
from recursor.broker import Broker, BrokerOptions, BrokerRuntime, BrokerScope, DepthPlan
from recursor.broker.background import BackgroundCalls
from recursor.compaction import Compaction
from recursor.context import Context, ContextInput
from recursor.engine import (
    Action,
    Books,
    CallModel,
    Engine,
    History,
    Outcome,
    ReadVar,
    RootChecks,
    RunCell,
)
from recursor.errors import (
    IterationLimitExceeded,
    RecursorError,
    RunAborted,
    SubcallError,
)
from recursor.limits import Ledger, Limits
from recursor.lm.base import LM, CallHints, Completion, Message
from recursor.lm.profile import streaming_of
from recursor.output import TypedAnswer
from recursor.result import RLMResult
from recursor.sandbox.base import Environment, Session, SessionSpec, SubcallHandler
from recursor.strategy import classify
from recursor.tools import ToolBox, ToolScope
from recursor.trace import CellStarted, ModelDelta, RunFinished, RunStarted, Sink, Trace
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
    #: compact a root's history past this share of its model's window (None: never)
    compact_at: float | None
    tools: ToolBox
    #: prompts.VERSIONS
    prompt_version: str

    def lm_for_depth(self, depth: int) -> LM: ...

    def sub_chars(self, lm: LM) -> int: ...

    def style_for(self, lm: LM) -> Literal["full", "compact"]: ...


@dataclass(frozen=True, slots=True)
class Watch:
    """Who watches a run from outside: ``listener`` sees every event live (a stream's reader),
    ``cancel`` stops the run when set (the reader left)."""

    listener: Sink | None = None
    cancel: Cancel | None = None


class Tree:
    """The state one completion shares across its recursion tree."""

    def __init__(
        self,
        rlm: Owner,
        limits: Limits | None = None,
        *,
        watch: Watch | None = None,
        typed: TypedAnswer | None = None,
    ) -> None:
        listener, cancel = (None, None) if watch is None else (watch.listener, watch.cancel)
        rlm._owned.check_open()
        self.rlm = rlm
        #: the run's limits: the RLM's, or an ask's of a conversation
        self.limits = rlm.limits if limits is None else limits
        self.ledger = Ledger(self.limits)
        #: the root run's typed answer (``output_type=``); children answer in text
        self.typed = typed
        self.trace = Trace(rlm.sinks)
        if listener is not None:  # a stream's reader: sees every event, live ones too
            self.trace.listen(listener)
        self.fatal: list[BaseException] = []
        #: set when the completion ends (or the RLM closes, or a stream's reader leaves): every
        #: sub-call and child run stops
        self.cancel = Cancel(rlm._owned.cancel, cancel)
        #: the caller may stop the run from outside (a stream): the root's model calls must
        #: then be abandonable too, not only the children's
        self.stoppable = cancel is not None
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
                f"max_iterations={self.limits.max_iterations} used and no final answer"
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
            output=outcome.output,
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
        self.background: BackgroundCalls | None = None

    def open(self) -> None:
        """Open this node's own REPL and start its engine."""
        broker = Broker(self.broker_scope())
        background = self.background_calls(broker)
        spec = SessionSpec(
            self.context, broker, self.depth, background=background, tools=self.tool_scope()
        )
        self.start(self.tree.rlm.environment.open(spec), background=background)

    def broker_scope(self) -> BrokerScope:
        """What the broker serving this node's REPL knows of the tree."""
        rlm, tree = self.tree.rlm, self.tree
        return BrokerScope(
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

    def tool_scope(self) -> ToolScope:
        """The host's tools and ``budget()`` as this node's REPL sees them (booked in its tree)."""
        return self.tree.rlm.tools.scope(
            ledger=self.tree.ledger,
            trace=self.tree.trace,
            run_id=self.run_id,
            depth=self.depth,
            budget_extra=self._budget_extra,
        )

    def background_calls(self, handler: SubcallHandler, *, first_id: int = 1) -> BackgroundCalls:
        """The calls model code starts without waiting (``llm_query_async``...): they outlive
        their cell, so they run on the host, under this node's scope and books."""
        return BackgroundCalls(
            handler,
            cancel=self.cancel,
            trace=self.tree.trace,
            run_id=self.run_id,
            first_id=first_id,
        )

    def start(
        self,
        session: Session,
        *,
        preface: str | None = None,
        background: BackgroundCalls | None = None,
    ) -> None:
        """Start the engine over ``session`` (this node's own, or a conversation's that outlives
        the run); ``preface`` goes before the question; ``background`` serves the session's
        background calls for this run (closed with the node, or by the conversation)."""
        rlm, tree = self.tree.rlm, self.tree
        self.session = session
        self.background = background
        meta = session.meta
        sub = rlm.lm_for_depth(self.depth + 1)
        settings = prompts.PromptSettings(
            max_iterations=tree.limits.max_iterations,
            max_output_chars=tree.limits.max_output_chars,
            llm=rlm.plan.llm_query(self.depth),
            rlm=rlm.plan.rlm_query(self.depth),
            sub_chars=rlm.sub_chars(sub),
            style=rlm.style_for(self.lm),
            budget=True,
            tools=tuple(rlm.tools.prompt_lines()),
            version=rlm.prompt_version,
            kind=classify(self.query),
        )
        self.engine = Engine(
            query=self.query,
            meta=meta,
            settings=settings,
            books=Books(tree.ledger, tree.trace, self.run_id, self.lm.name),
            history=History(
                preface,
                self._compaction(),
                notes=None if background is None else background.finished_notes,
                # the typed answer and the cost circuit breaker watch the root run only
                checks=RootChecks(tree.typed, breaker=True) if self.depth == 0 else None,
            ),
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
                        "limits": asdict(tree.limits),
                        "prompt_version": settings.version,
                        "prompt_style": settings.style,
                        "tools": list(rlm.tools.names),
                        "prompt_kind": settings.kind,
                    }
                ),
            )
        )

    def _compaction(self) -> Compaction | None:
        at = self.tree.rlm.compact_at
        window = self.tree.rlm.broker_options.context_window(self.lm)
        return None if at is None or window is None else Compaction(window, at)

    def _budget_extra(self) -> dict[str, int]:
        """The run's own part of ``budget()``: its iterations and the depth below it."""
        used = 0 if self.engine is None else self.engine.iterations
        return {
            "iterations": max(0, self.tree.limits.max_iterations - used),
            "depth": max(0, self.tree.rlm.max_depth - self.depth),
        }

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
        if self.background is not None:
            # first: pending calls are cancelled (queued ones never start) and their threads end
            self.background.close()
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
        iteration = self.engine.iterations if self.engine is not None else 0
        self.tree.trace.emit_live(CellStarted(self.run_id, iteration, action.index, action.code))
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


def _count_late(node: Node) -> Callable[[Completion], None]:
    """Records the usage of a model call the run gave up on but that returned anyway."""
    ledger, name = node.tree.ledger, node.lm.name

    def late(completion: Completion) -> None:
        ledger.record(name, completion.usage)

    return late


def _on_delta(node: Node) -> Callable[[str], None] | None:
    """Where the node's model call sends its reply's pieces: to the listeners, when any."""
    trace = node.tree.trace
    if not trace.listening:
        return None  # nobody watches: no streaming request, no per-token work
    iteration = node.engine.iterations if node.engine is not None else 0
    run_id, cancel = node.run_id, node.cancel

    def on_delta(text: str) -> None:
        if cancel.is_set():
            # the run was stopped (its stream's reader left): raising here ends the backend's
            # read of the HTTP stream now, not when the model has finished its reply
            raise SubcallError(f"cancelled: {cancel.reason}")
        trace.emit_live(ModelDelta(run_id, iteration, text))

    return on_delta


def _hints(node: Node, on_delta: Callable[[str], None] | None) -> CallHints:
    # one key per run: every turn resends the run's prefix, which the provider caches
    return CallHints(on_delta=on_delta, cache_key=f"recursor-{node.run_id}")


def _model_sync(node: Node, messages: list[Message]) -> Completion:
    on_delta = _on_delta(node)
    streaming = streaming_of(node.lm)
    if streaming is not None:
        return streaming.complete_with(messages, _hints(node, on_delta))
    completion = node.lm.complete(messages)
    if on_delta is not None:  # a backend that cannot stream: its reply is one delta
        _whole_reply(on_delta, completion)
    return completion


async def _model_async(node: Node, messages: list[Message]) -> Completion:
    on_delta = _on_delta(node)
    streaming = streaming_of(node.lm)
    if streaming is not None:
        return await streaming.acomplete_with(messages, _hints(node, on_delta))
    completion = await node.lm.acomplete(messages)
    if on_delta is not None:
        _whole_reply(on_delta, completion)
    return completion


def _whole_reply(on_delta: Callable[[str], None], completion: Completion) -> None:
    # The call is over: a stopped run refusing the delta must not lose the completion, whose
    # tokens are counted by whoever still waits for it (the engine, or the late count).
    with contextlib.suppress(SubcallError):
        on_delta(completion.text)


def _perform_sync(node: Node, action: Action) -> Any:
    session = node.session
    assert session is not None
    if isinstance(action, CallModel):
        messages = action.messages
        return call_with_deadline(
            lambda: _model_sync(node, messages),
            node.tree.ledger.remaining(),
            node.tree.ledger,
            # a child can be stopped while the run goes on, and so can a streamed root
            node.cancel if node.depth or node.tree.stoppable else None,
            late=_count_late(node),
        )
    if isinstance(action, RunCell):
        return node.run_cell(action)
    return session.get_var(action.name, deadline=node.cell_deadline())


async def _perform_async(node: Node, action: Action) -> Any:
    session = node.session
    assert session is not None
    if isinstance(action, CallModel):
        remaining = node.tree.ledger.remaining()
        coro: Coroutine[Any, Any, Completion] = _model_async(node, action.messages)
        try:
            # a blocking backend's thread outlives a cancelled or timed-out await: what it
            # returns after that is still counted
            with on_late(_count_late(node)):
                return await asyncio.wait_for(coro, remaining)
        except TimeoutError:
            raise deadline_passed(node.tree.ledger) from None
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
            error = as_recursor_error(exc)
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
            error = as_recursor_error(exc)
        node.check_fatal()
