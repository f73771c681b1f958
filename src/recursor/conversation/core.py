"""A conversation with an RLM: one REPL that outlives its asks.

:meth:`recursor.rlm.RLM.session` makes a :class:`Conversation`. Each ask is a run of its own (a
:class:`~recursor.tree.Tree` with its own ledger, trace and limits, so its result is the
``RLMResult`` a completion returns), but the root's REPL session is the conversation's: it is
opened once and the runs take turns on it. The session's sub-call handler forwards to the
broker of the ask running, so sub-calls are booked on that ask's ledger and trace.

The root of a follow-up sees the earlier questions and answers as a short preface (answers cut
to :data:`ANSWER_CHARS`), and the REPL holds them in full as ``history``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict, Unpack

from recursor import prompts
from recursor._cancel import Cancel
from recursor._closing import Closing
from recursor._threads import in_daemon_thread
from recursor.broker import Broker
from recursor.broker.background import BackgroundCalls
from recursor.context import Context, ContextInput
from recursor.conversation import record as rec
from recursor.conversation.resume import RecordedAnswers, ResumeReport, replay_ask
from recursor.engine import Outcome
from recursor.errors import (
    ConversationBusy,
    ConversationClosed,
    CostLimitExceeded,
    IterationLimitExceeded,
    LimitExceeded,
    RecursorError,
    ResumeError,
    RunTimeout,
    SubcallError,
    SubcallLimitExceeded,
    TokenLimitExceeded,
)
from recursor.limits import Limits
from recursor.protocol import clip
from recursor.result import RLMResult
from recursor.sandbox.base import (
    BackgroundRequest,
    BackgroundStatus,
    Session,
    SessionSpec,
    SubcallHandler,
    SubcallRequest,
)
from recursor.sandbox.base import SubcallResponse as Response
from recursor.sandbox.hostcall import ToolRequest, ToolResponse
from recursor.streaming import astream_run, stream_run
from recursor.tools import ToolScope
from recursor.trace import Event, Sink
from recursor.tree import Node, Owner, Place, Tree, Watch, drive_async, drive_sync
from recursor.usage import Usage, UsageReport

#: characters of an earlier answer (and question) the root of a follow-up is shown
ANSWER_CHARS = 1_500
QUESTION_CHARS = 500
#: the variable listing a follow-up's root is shown: its size, and how long it may take
VARS_CHARS = 800
VARS_TIMEOUT_S = 5.0


class SessionOptions(TypedDict, total=False):
    """The options of a session (see :class:`Conversation`)."""

    session_limits: Limits | None
    idle_timeout_s: float | None


class Conversation(Closing):
    """``with rlm.session(context=...) as s: s.ask(q1); s.ask(q2)``; see the module's doc.

    ``session_limits`` bound the whole conversation (iterations, sub-calls, tokens, cost and
    wall time summed over its asks); each ask also has its own (``ask(q, limits=...)``, default
    the RLM's), and runs with whichever is tighter. An ask the session budget cannot start
    raises the matching :class:`~recursor.errors.LimitExceeded`. ``idle_timeout_s`` closes a
    session no ask has used for that long (its worker stops).

    Two asks never interleave: :meth:`ask` waits for the one running; :meth:`aask` raises
    :class:`~recursor.errors.ConversationBusy` instead (an event loop must not block on it).
    """

    def __init__(
        self,
        rlm: Owner,
        context: ContextInput = None,
        **options: Unpack[SessionOptions],
    ) -> None:
        rlm._owned.check_open()
        self.rlm = rlm
        self.session_limits = options.get("session_limits")
        self.idle_timeout_s = options.get("idle_timeout_s")
        self._context = Context(context)
        self._lock = threading.Lock()
        self._closed = False
        self._closed_why = ""
        self._broker: SubcallHandler | None = None
        #: the run of the ask in progress (what :meth:`stop` stops)
        self._tree: Tree | None = None
        self._timer: threading.Timer | None = None
        self._started = time.monotonic()
        #: what changed the REPL, in order (what :meth:`save` writes)
        self.record = rec.SessionRecord()
        #: the values of contexts added later, for ``save(include_context=True)``
        self._values: dict[str, Any] = {}
        self._usage = UsageReport()
        self._iterations = 0
        self._subcalls = 0
        #: set by :func:`resume`: the last resume's findings (stale names go to the next root)
        self.resume_report: ResumeReport | None = None
        self._stale_note: list[str] = []
        #: the running ask's background calls (``llm_query_async``...), and the next handle id
        self._background: BackgroundCalls | None = None
        self._next_handle = 1
        #: the running ask's tool scope (tools and budget() are booked in the ask's tree)
        self._tools: ToolScope | None = None
        spec = SessionSpec(
            self._context,
            self._serve,
            0,
            background=self._serve_background,
            tools=_AskTools(rlm.tools.names, lambda: self._tools),
        )
        self._session: Session = rlm.environment.open(spec)
        try:
            self._session.bind("history", [], deadline=None)
        except BaseException:
            self._session.close()
            self._context.close()
            raise
        self.record.entries.append(rec.ContextRecord("context", "", self._session.meta.to_dict()))
        self._touch()

    # -- state ----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """An ask (or a save, or add_context) is running."""
        return self._lock.locked()

    @property
    def usage(self) -> UsageReport:
        """Usage of every ask so far."""
        return self._usage

    @property
    def history(self) -> list[dict[str, Any]]:
        """The questions and answers so far, as the REPL's ``history`` holds them."""
        return [
            {"question": a.question, "answer": a.answer, "stop_reason": a.stop_reason}
            for a in self.record.asks
        ]

    @property
    def contexts(self) -> list[str]:
        """The names the contexts are bound to in the REPL: ``context``, ``context_1``, ..."""
        return [c.name for c in self.record.contexts]

    def _serve(self, request: SubcallRequest) -> Response:
        # a thread model code left running can call after its ask ended: no one books it
        broker = self._broker
        if broker is None:
            return Response.failure(len(request.prompts), "no ask of this session is running")
        return broker(request)

    def _serve_background(self, request: BackgroundRequest) -> BackgroundStatus:
        # background calls belong to an ask: they end (cancelled if pending) with it
        background = self._background
        if background is None:
            return BackgroundStatus.refusal(
                "no ask of this session is running", SubcallError.__name__
            )
        return background(request)

    def _check_open(self) -> None:
        if self._closed:
            raise ConversationClosed(f"this session was closed{self._closed_why}")
        self.rlm._owned.check_open()

    def _touch(self) -> None:
        """(Re)arm the idle timer."""
        if self._timer is not None:
            self._timer.cancel()
        if self.idle_timeout_s is None or self._closed:
            return
        self._timer = threading.Timer(self.idle_timeout_s, self._idle)
        self._timer.daemon = True
        self._timer.start()

    def _idle(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # an ask is running: it re-arms the timer when it ends
        try:
            self._close(f" after {self.idle_timeout_s} s unused (idle_timeout_s)")
        finally:
            self._lock.release()

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the REPL's worker. Idempotent; waits for an ask that is running."""
        with self._lock:
            self._close("")

    async def aclose(self) -> None:
        await in_daemon_thread(self.close)

    def _close(self, why: str) -> None:
        if self._closed:
            return
        self._closed, self._closed_why = True, why
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._session.close()
        finally:
            self._context.close()

    # -- asks -----------------------------------------------------------------------------
    def ask(self, query: str, *, limits: Limits | None = None) -> RLMResult:
        """Answer ``query`` in this conversation; waits for an ask already running."""
        return self._ask(query, limits, None, None)

    def _ask(
        self, query: str, limits: Limits | None, listener: Sink | None, cancel: Cancel | None
    ) -> RLMResult:
        with self._lock:
            self._check_open()
            tree, node = self._begin(query, limits, listener, cancel)
            try:
                outcome = drive_sync(node)
            finally:
                self._end(tree)
            return self._finish(tree, node, outcome)

    async def aask(self, query: str, *, limits: Limits | None = None) -> RLMResult:
        """:meth:`ask` on an event loop; raises ConversationBusy while another ask runs."""
        return await self._aask(query, limits, None, None)

    def stream(self, query: str, *, limits: Limits | None = None) -> Iterator[Event]:
        """:meth:`ask`, watched: its events as they happen, then
        :class:`~recursor.streaming.Completed`. Leaving the loop early stops the ask (its cell
        interrupted, its sub-calls cancelled, a root model call abandoned); the REPL and the
        conversation stay usable."""
        return stream_run(lambda listener, cancel: self._ask(query, limits, listener, cancel))

    def astream(self, query: str, *, limits: Limits | None = None) -> AsyncGenerator[Event, None]:
        """:meth:`stream` for ``async for``; the ask is :meth:`aask`'s."""
        return astream_run(lambda listener, cancel: self._aask(query, limits, listener, cancel))

    async def _aask(
        self, query: str, limits: Limits | None, listener: Sink | None, cancel: Cancel | None
    ) -> RLMResult:
        if not self._lock.acquire(blocking=False):
            raise ConversationBusy(
                "another ask of this session is running; await it first (asks never interleave)"
            )
        try:
            self._check_open()
            tree, node = self._begin(query, limits, listener, cancel)
            try:
                outcome = await drive_async(node)
            finally:
                await in_daemon_thread(self._end, tree)
            return await in_daemon_thread(self._finish, tree, node, outcome)
        finally:
            self._lock.release()

    def stop(self, reason: str = "stopped by the caller") -> None:
        """Stop the ask in progress, from another thread (the chat's Ctrl-C): its cell is
        interrupted and its sub-calls cancelled; a root model call already sent is waited for
        (from :meth:`stream`, leaving the loop abandons it instead).
        The ask returns with ``stop_reason="error"``; the REPL and the session stay usable."""
        tree = self._tree
        if tree is not None:
            tree.cancel.set(reason)

    def _begin(
        self, query: str, limits: Limits | None, listener: Sink | None, cancel: Cancel | None
    ) -> tuple[Tree, Node]:
        if self._timer is not None:
            self._timer.cancel()
        tree = Tree(
            self.rlm,
            self._ask_limits(limits or self.rlm.limits),
            watch=Watch(listener, cancel),
        )
        self._tree = tree
        node = Node(tree, query, self._context, Place(0, None, tree.cancel))
        self._broker = Broker(node.broker_scope())
        self._background = node.background_calls(self._broker, first_id=self._next_handle)
        self._tools = node.tool_scope()
        node.start(
            self._session, preface=self._preface(self._variables()), background=self._background
        )
        return tree, node

    def _end(self, tree: Tree) -> None:
        self._tools = None
        background, self._background = self._background, None
        if background is not None:  # pending calls of the ask are cancelled with it
            self._next_handle = background.next_id
            background.close()
        self._broker = None
        self._tree = None
        tree.close()

    def _finish(self, tree: Tree, node: Node, outcome: Outcome) -> RLMResult:
        subcalls = tree.ledger.subcalls
        try:
            result = tree.result(node, outcome)
        except BaseException:  # raise_errors: the ask is still part of the conversation
            self._book(tree, node, outcome, tree.ledger.report(), subcalls)
            raise
        self._book(tree, node, outcome, result.usage, subcalls)
        return result

    def _book(
        self, tree: Tree, node: Node, outcome: Outcome, usage: UsageReport, subcalls: int
    ) -> None:
        self._usage = _add(self._usage, usage)
        self._iterations += outcome.iterations
        self._subcalls += subcalls
        self.record.entries.append(
            rec.AskRecord.from_events(
                node.query,
                tree.trace.events,
                node.run_id,
                answer=outcome.answer,
                stop_reason=outcome.stop_reason,
                iterations=outcome.iterations,
                usage=usage.to_dict(),
                max_output_chars=tree.limits.max_output_chars,
            )
        )
        self._stale_note = []  # told once, to the ask after the resume
        if not self._closed:
            self._session.bind("history", self.history, deadline=None)
            self._touch()

    def _ask_limits(self, limits: Limits) -> Limits:
        """``limits`` tightened to what the session's budget has left."""
        s = self.session_limits
        if s is None:
            return limits
        total = self._usage.total
        left: dict[str, tuple[float | None, type[LimitExceeded]]] = {
            "max_iterations": (_left(s.max_iterations, self._iterations), IterationLimitExceeded),
            "max_subcalls": (_left(s.max_subcalls, self._subcalls), SubcallLimitExceeded),
            "max_tokens": (_left(s.max_tokens, total.total_tokens), TokenLimitExceeded),
            "max_cost_usd": (_left(s.max_cost_usd, total.cost_usd or 0.0), CostLimitExceeded),
            "timeout_s": (_left(s.timeout_s, time.monotonic() - self._started), RunTimeout),
        }
        changes: dict[str, Any] = {}
        for name, (room, error) in left.items():
            if room is None:
                continue
            if room <= 0:
                raise error(f"session_limits.{name}={getattr(s, name)} used up by earlier asks")
            mine = getattr(limits, name)
            changes[name] = room if mine is None else min(mine, room)
        return replace(limits, **changes)

    def _variables(self) -> str | None:
        """The REPL's variables as ``SHOW_VARS()`` lists them, for a follow-up's root (a small
        model reuses a variable it is shown, and recomputes one it is only told exists); None
        before the first ask, or when the listing fails. Not a cell of the ask: not traced,
        not replayed on resume."""
        if not self.record.asks:
            return None
        try:
            cell = self._session.run(
                "SHOW_VARS()", deadline=time.monotonic() + VARS_TIMEOUT_S, output_limit=VARS_CHARS
            )
        except RecursorError:
            return None
        if cell.error is not None or cell.timed_out or not cell.stdout.strip():
            return None
        return cell.stdout.strip()

    def _preface(self, variables: str | None = None) -> str | None:
        """What the root of this ask is told of the conversation so far."""
        asks = self.record.asks
        added = self.record.contexts[1:]
        if not asks and not added and not self._stale_note:
            return None
        turns = "\n".join(
            f"Q{i}: {clip(a.question, QUESTION_CHARS)}\nA{i}: {clip(_answer_text(a), ANSWER_CHARS)}"
            for i, a in enumerate(asks, 1)
        )
        notes = [
            f"More contexts were added: `{c.name}` ({c.meta.get('type')}, "
            f"{c.meta.get('total_chars', 0):,} characters)."
            for c in added
        ]
        notes += self._stale_note
        if variables is not None:
            notes.append("Variables in the REPL now (name: type, length):\n" + variables)
        return prompts.template("conversation_history").substitute(
            turns=turns or "(none yet)", notes="\n".join(notes)
        )

    # -- more contexts --------------------------------------------------------------------
    def add_context(self, more: ContextInput) -> str:
        """Bind ``more`` in the REPL as the next ``context_N``; the next root is told of it.
        Returns the name."""
        with self._lock:
            self._check_open()
            name = f"context_{len(self.record.contexts)}"
            self._add(name, more, expect=None)
            self._touch()
            return name

    def _add(self, name: str, more: ContextInput, *, expect: str | None) -> None:
        ctx = Context(more)
        try:
            value, _ = ctx.value()
        finally:
            ctx.close()
        digest = rec.value_sha256(value)
        if expect is not None and digest != expect:
            raise ResumeError(f"{name} is not the context the session recorded (sha256 differs)")
        meta = self._session.bind(name, value, deadline=None)
        self._values[name] = value
        self.record.entries.append(rec.ContextRecord(name, digest, meta.to_dict()))

    # -- save -----------------------------------------------------------------------------
    def save(self, path: str | Path, *, include_context: bool = False) -> Path:
        """Write the session (questions, answers, cells, sub-call answers) as JSON, atomically.
        Contexts are stored by sha256 unless ``include_context``."""
        with self._lock:
            first = self.record.contexts[0]
            if not first.sha256 or (include_context and "context" not in self._values):
                value, _ = self._context.value()
                first.sha256 = rec.value_sha256(value)
                if include_context:
                    self._values["context"] = value
            for c in self.record.contexts:
                c.value = self._values.get(c.name) if include_context else None
            return rec.save(self.record, path, include_context=include_context)

    # -- resume (see recursor.conversation.resume) -----------------------------------------
    def _replay(self, saved: rec.SessionRecord, contexts: list[ContextInput]) -> ResumeReport:
        """Rebuild this (new) session's REPL from ``saved``; no model is called."""
        t0 = time.monotonic()
        report = ResumeReport()
        answers = RecordedAnswers(saved.asks)
        self._broker = answers
        more = list(contexts)
        try:
            for entry in saved.entries:
                if isinstance(entry, rec.ContextRecord):
                    if entry.name == "context":
                        self.record.contexts[0].sha256 = entry.sha256
                        continue
                    if entry.included:
                        value: Any = entry.value
                    elif more:
                        value = more.pop(0)
                    else:
                        raise ResumeError(
                            f"the session added {entry.name}, saved by hash only: pass it in "
                            "contexts=[...], in order"
                        )
                    self._add(entry.name, value, expect=entry.sha256)
                    continue
                n = len(self.record.asks) + 1
                if n > 1:  # `history` as that ask's cells saw it
                    self._session.bind("history", self.history, deadline=None)
                report.cells += replay_ask(self._session, n, entry, self.rlm.limits.cell_timeout_s)
                self.record.entries.append(entry)
                self._usage = _add(self._usage, _report(entry.usage))
                self._iterations += entry.iterations
        finally:
            self._broker = None
        report.answered = sum(len(a.subcalls) for a in saved.asks) - answers.misses
        report.missed = answers.misses
        report.elapsed_s = time.monotonic() - t0
        self.resume_report = report
        if report.stale:
            bad = [c for c in report.cells if c.status != "same"]
            self._stale_note = [
                "This session was resumed by running its recorded cells again. These variables "
                f"may be stale ({bad[0].detail}{' and more' if len(bad) > 1 else ''}): "
                + ", ".join(f"`{n}`" for n in report.stale)
                + ". Recompute them before relying on them."
            ]
        self._session.bind("history", self.history, deadline=None)
        return report


class _AskTools:
    """A conversation's REPL outlives its asks: its tool calls go to the running ask's scope."""

    def __init__(self, names: tuple[str, ...], current: Callable[[], ToolScope | None]) -> None:
        self._names = names
        self._current = current

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def submit(self, request: ToolRequest, done: Callable[[ToolResponse], None]) -> None:
        scope = self._current()
        if scope is None:  # a thread model code left running after its ask
            done(ToolResponse.failure("no ask of this session is running"))
            return
        scope.submit(request, done)


def resume(
    rlm: Owner,
    path: str | Path,
    context: ContextInput = None,
    *,
    contexts: list[ContextInput] | None = None,
    **options: Unpack[SessionOptions],
) -> Conversation:
    """A session rebuilt from ``save(path)``: see :meth:`recursor.rlm.RLM.resume`."""
    saved = rec.load(path)
    first = saved.contexts[0]
    if context is None and first.included:
        context = first.value
    ctx = Context(context)
    try:
        value, _ = ctx.value()
    finally:
        ctx.close()
    if rec.value_sha256(value) != first.sha256:
        raise ResumeError(
            "the context given is not the one the session recorded (sha256 differs)"
            if context is not None
            else "the session was saved without its context: pass context=..."
        )
    conv = Conversation(rlm, value, **options)
    try:
        conv._replay(saved, list(contexts or []))
    except BaseException:
        conv.close()
        raise
    return conv


def _answer_text(a: rec.AskRecord) -> str:
    return a.answer if a.answer is not None else f"(no answer: {a.stop_reason})"


def _left(cap: float | None, used: float) -> float | None:
    return None if cap is None else cap - used


def _add(a: UsageReport, b: UsageReport) -> UsageReport:
    by_model = dict(a.by_model)
    for name, usage in b.by_model.items():
        by_model[name] = by_model.get(name, Usage()) + usage
    return UsageReport(total=a.total + b.total, by_model=by_model)


def _report(d: dict[str, Any]) -> UsageReport:
    fields = set(Usage.__dataclass_fields__)

    def usage(x: dict[str, Any]) -> Usage:
        return Usage(**{k: v for k, v in x.items() if k in fields})

    return UsageReport(
        total=usage(d.get("total", {})),
        by_model={k: usage(v) for k, v in d.get("by_model", {}).items()},
    )
