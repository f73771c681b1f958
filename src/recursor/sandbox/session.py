"""The host's end of one worker: start it, run cells, serve its sub-calls, interrupt, restart.

While a cell runs, the host serves the worker's sub-calls on threads and watches the deadline;
a cell past it gets SIGINT (its namespace survives), then, if it does not yield within
``grace_s``, the worker is killed and a fresh one started (the model is told its state was
lost). The cell's sub-calls are served under its cancel scope (:mod:`recursor._cancel`): at
the deadline, or when the worker dies, the broker stops those still queued or in flight too.
Frames from the worker are untrusted: read through :mod:`~recursor.sandbox.wire`, and a bad one
(or one the session's state does not allow) costs the worker, never the host. Both directions
go through :mod:`~recursor.sandbox.pipes`: writes never block the deadline logic, the queue of
incoming frames is bounded (backpressure), a flood between cells kills the worker, and at most
:data:`MAX_IN_FLIGHT` sub-calls per session are served at once (more are refused), so forged
requests cannot make the host start a thread each. Calls of the host's tools (``tool_call``)
go to the session's :class:`~recursor.sandbox.hostcall.ToolHandler` the same way, under the
same bound, and are refused with the cell's sub-calls when it stops.

A session is not tied to one completion: it runs cells until :meth:`WorkerSession.close`
(idempotent), and a later ``run`` after a lost worker starts a new one. How the worker comes
to exist is the :class:`WorkerSource`'s business (an environment: a launcher, a spare, limits).
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from recursor._cancel import POLL_S, Cancel, current, scope
from recursor.context import ContextMeta
from recursor.errors import ProtocolError, SandboxError, WorkerCrashed
from recursor.sandbox import wire
from recursor.sandbox.base import (
    BackgroundStatus,
    CellResult,
    SessionSpec,
    SubcallRequest,
    SubcallResponse,
)
from recursor.sandbox.framing import Channel
from recursor.sandbox.hardening import Measure
from recursor.sandbox.hostcall import ToolResponse
from recursor.sandbox.launch import Launched, WorkerProcess
from recursor.sandbox.pipes import Event, Inbox, Outbox
from recursor.sandbox.stderr_tail import StderrTail


class WorkerSource(Protocol):
    """What a session needs of its environment."""

    #: how long an interrupted cell may take to stop before its worker is killed
    grace_s: float
    #: how long a worker may take from launch to ``ready``
    start_timeout_s: float

    def take(self, spec: SessionSpec) -> Launched:
        """A started worker for this session (a spare, or a new one)."""
        ...

    def init_frame(self, spec: SessionSpec, launched: Launched) -> wire.Init:
        """The ``init`` frame that gives this worker its context, limits and confinement."""
        ...

    def on_ready(self, launched: Launched) -> list[Measure]:
        """The worker said ``ready``: what the host enforces around it."""
        ...

    def interrupt(self, launched: Launched) -> None:
        """The cell is out of time: tell the worker (SIGINT, or the launcher's way)."""
        ...

    def between_cells(self, launched: Launched, *, idle: bool) -> None:
        """The worker is idle now (a cell or get_var ended) or about to be used again."""
        ...


_Event = Event
_CELL_FRAMES = (wire.Result, wire.Subcall, wire.Background, wire.ToolCall)
#: sub-calls of one session served at once (a thread each, waiting on the broker); more are
#: refused with an error, so a worker cannot make the host start a thread per forged request
MAX_IN_FLIGHT = 64


def _prompts_of(frame: wire.Subcall | wire.Background) -> int:
    """How many answers a refusal of ``frame`` holds (-1: a background status)."""
    return len(frame.request.prompts) if isinstance(frame, wire.Subcall) else -1


class WorkerSession:
    """One worker, possibly across several completions; :meth:`close` ends it (idempotent)."""

    def __init__(self, source: WorkerSource, spec: SessionSpec) -> None:
        self._source = source
        self._spec = spec
        self._tokens = itertools.count()
        self._proc: WorkerProcess | None = None
        self._channel: Channel | None = None
        self._inbox: Inbox | None = None
        self._outbox: Outbox | None = None
        self._stderr: StderrTail | None = None
        self._launched: Launched | None = None
        self._meta: ContextMeta | None = None
        self._closed = False
        #: the confinement measures of the current worker (re-read at every restart)
        self.measures: list[Measure] = []
        #: the cancel scope of the cell running (or last run): its sub-calls are served under it
        self._cell = Cancel()
        #: values bound with :meth:`bind`: sent again to a restarted worker, as context is
        self._bound: dict[str, Any] = {}
        #: the cell's tool calls being served: host token -> the worker's request id
        self._tools_pending: dict[int, int] = {}
        self._start()

    @property
    def meta(self) -> ContextMeta:
        assert self._meta is not None
        return self._meta

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle ------------------------------------------------------------------------------
    def _start(self) -> None:
        launched = self._source.take(self._spec)
        self._launched = launched
        self._proc = launched.proc
        self._channel = launched.channel
        self._stderr = launched.stderr
        self._inbox = Inbox(launched.channel)
        self._outbox = Outbox(launched.channel)
        # the handshake and the re-binds are commands: their frames are not idle chatter
        self._inbox.busy(True)
        try:
            self._handshake(launched)
        finally:
            self._inbox.busy(False)

    def _handshake(self, launched: Launched) -> None:
        init = self._source.init_frame(self._spec, launched)
        if self._spec.background is not None:
            init = dataclasses.replace(init, background=True)
        self._send(init)
        got = self._next_frame(time.monotonic() + self._source.start_timeout_s)
        if not isinstance(got, wire.Ready):
            if isinstance(got, wire.Fatal):
                detail = got.error
            elif got is None:
                detail = self._crash_detail()
            else:
                detail = f"a {got.op!r} frame where 'ready' was expected"
            self._kill()
            raise SandboxError(f"the worker did not start: {detail}")
        self._meta = got.meta
        self.measures = [*got.measures, *self._source.on_ready(launched)]
        for name, value in self._bound.items():
            self._bind(name, value, time.monotonic() + self._source.start_timeout_s)

    def _send(self, frame: wire.Frame) -> None:
        """Queue ``frame`` for the worker (never blocks); a worker that does not drain its
        channel, or a frame that cannot be sent, breaks the channel (the worker is killed)."""
        assert self._outbox is not None and self._inbox is not None
        try:
            self._outbox.send(frame.to_wire())
        except ProtocolError as exc:
            self._inbox.put(("broken", str(exc), None))

    def _take(self, timeout: float | None) -> _Event:
        assert self._inbox is not None
        return self._inbox.get(timeout)

    def _next_frame(self, deadline: float) -> wire.Frame | None:
        """The next frame, or None when the worker is gone, broke the protocol or is late."""
        while True:
            try:
                kind, payload, _ = self._take(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if kind == "frame":
                assert isinstance(payload, wire.Frame)
                return payload
            if kind in ("eof", "broken"):
                return None

    def _crash_detail(self) -> str:
        code = self._proc.poll() if self._proc else None
        if code is None and self._proc is not None:
            try:  # the channel closed first; the exit status follows within moments
                code = self._proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        tail = "" if self._stderr is None else self._stderr.tail()
        what = f"exit status {code}" if code is None or code >= 0 else f"killed by signal {-code}"
        return what + (f"; stderr: {tail}" if tail else "")

    def _kill(self) -> None:
        launched, self._launched = self._launched, None
        self._proc = None
        if self._inbox is not None:
            self._inbox.stop()
        if self._outbox is not None:
            self._outbox.close()
        if launched is not None:
            launched.discard()

    def close(self) -> None:
        # No graceful shutdown: the worker holds nothing worth saving, and waiting for an
        # interpreter to finalize would cost more than the whole of a short completion.
        self._closed = True
        self._cell.set("the REPL was closed")
        self._kill()

    # -- cells ----------------------------------------------------------------------------------
    def _idle(self, idle: bool) -> None:
        """Stop the worker between cells, continue it for the next command (where allowed)."""
        if self._launched is not None:
            self._source.between_cells(self._launched, idle=idle)

    @contextmanager
    def _working(self) -> Iterator[None]:
        """One command (a cell, a bind, a get_var): the worker's frames count as the
        command's, and the worker is continued for it and stopped after it (where allowed)."""
        assert self._inbox is not None
        # busy before the worker continues: a thread of the worker's that was stopped mid-send
        # goes on at once, and its frames would otherwise be counted as a flood between cells
        self._inbox.busy(True)
        self._idle(False)
        try:
            yield
        finally:
            if self._inbox is not None:  # the worker may have been replaced meanwhile
                self._inbox.busy(False)
            self._idle(True)

    def run(self, code: str, *, deadline: float | None, output_limit: int) -> CellResult:
        if self._closed:
            raise SandboxError("this REPL session was closed")
        if self._proc is None:
            self._start()
        with self._working():
            # under the caller's scope: a child RLM stopped by its parent stops its cells too
            cell = self._cell = Cancel(current())
            self._tools_pending = {}
            return self._run_cell(code, cell, deadline=deadline, output_limit=output_limit)

    def _run_cell(
        self, code: str, cell: Cancel, *, deadline: float | None, output_limit: int
    ) -> CellResult:
        self._send(wire.Exec(code, output_limit))
        t0 = time.monotonic()
        pending: dict[int, tuple[int, int]] = {}  # host token -> (worker's request id, prompts)
        while True:
            # checked before every frame too, so a worker that keeps sending cannot outrun it
            left = None if deadline is None else deadline - time.monotonic()
            if cell.is_set() or (left is not None and left <= 0):
                result = self._interrupt(pending, output_limit)
                result.duration_s = result.duration_s or time.monotonic() - t0
                return result
            try:
                event = self._take(POLL_S if left is None else min(POLL_S, left))
            except queue.Empty:
                continue
            ended = self._on_event(event, pending, cell, output_limit, t0)
            if ended is not None:
                return ended

    def _on_event(
        self,
        event: _Event,
        pending: dict[int, tuple[int, int]],
        cell: Cancel,
        output_limit: int,
        t0: float,
    ) -> CellResult | None:
        """One event of the cell started at ``t0``; its result when the event ends the cell."""
        kind, payload, extra = event
        if kind == "frame":
            assert isinstance(payload, wire.Frame)
            done = self._on_frame(payload, pending, cell)
            if isinstance(done, CellResult) or done is None:
                return done
            kind, payload = "broken", done
        if kind == "subcall_done" and isinstance(payload, int) and payload in pending:
            ident = pending.pop(payload)[0]
            if isinstance(extra, BackgroundStatus):
                self._send(wire.BackgroundResult(ident, extra))
            else:
                assert isinstance(extra, SubcallResponse)
                self._send(wire.SubcallResult(ident, extra))
        elif kind == "tool_done" and isinstance(payload, int) and payload in self._tools_pending:
            assert isinstance(extra, ToolResponse)
            self._send(wire.ToolResult(self._tools_pending.pop(payload), extra))
        elif kind in ("eof", "broken"):
            broken = payload if kind == "broken" else None
            result = self._worker_gone(cell, broken=broken, output_limit=output_limit)
            result.duration_s = time.monotonic() - t0
            return result
        return None

    def _worker_gone(self, cell: Cancel, *, broken: object, output_limit: int) -> CellResult:
        """The cell's result when the worker died (``broken`` None) or broke the protocol."""
        # the worker is gone: nobody will read the answers of its sub-calls
        cell.set("the REPL was lost")
        why = (
            f"the REPL process died ({self._crash_detail()})"
            if broken is None
            else f"the REPL broke the channel protocol ({broken})"
        )
        return self._lost(why, output_limit)

    def _on_frame(
        self, frame: wire.Frame, pending: dict[int, tuple[int, int]], cell: Cancel
    ) -> CellResult | str | None:
        """A frame during a cell: the cell's result; None for a sub-call it started (now in
        ``pending``); or, as a string, how the frame broke the protocol."""
        try:
            wire.expect(frame, _CELL_FRAMES)
        except ProtocolError as exc:
            return str(exc)
        if isinstance(frame, wire.Result):
            return frame.cell
        if isinstance(frame, wire.Background):
            self._on_background(frame, pending, cell)
            return None
        if isinstance(frame, wire.ToolCall):
            self._serve_tool(frame)
            return None
        assert isinstance(frame, wire.Subcall)
        if len(pending) >= MAX_IN_FLIGHT:
            self._refuse(
                frame.id,
                len(frame.request.prompts),
                f"more than {MAX_IN_FLIGHT} sub-calls of this REPL are in flight",
                "SubcallLimitExceeded",
            )
            return None
        token = next(self._tokens)
        pending[token] = (frame.id, len(frame.request.prompts))
        self._serve(token, frame.request, cell)
        return None

    def _on_background(
        self, frame: wire.Background, pending: dict[int, tuple[int, int]], cell: Cancel
    ) -> None:
        """Serve a background request on a thread (a ``wait`` blocks), counted as in flight."""
        handler, inbox = self._spec.background, self._inbox
        assert inbox is not None
        if handler is None or len(pending) >= MAX_IN_FLIGHT:
            why = "background calls are not offered" if handler is None else "too many in flight"
            refused = BackgroundStatus.refusal(why, "SubcallError")
            self._send(wire.BackgroundResult(frame.id, refused))
            return
        token = next(self._tokens)
        pending[token] = (frame.id, -1)  # -1: refused as a background status, not a response

        def work() -> None:
            try:
                with scope(cell):
                    status = handler(frame.request)
            except Exception as exc:
                status = BackgroundStatus.refusal(str(exc), type(exc).__name__)
            inbox.put(("subcall_done", token, status))

        threading.Thread(target=work, daemon=True).start()

    def _serve(self, token: int, request: SubcallRequest, cell: Cancel) -> None:
        inbox = self._inbox
        assert inbox is not None

        def work() -> None:
            try:
                with scope(cell):
                    response = self._spec.handler(request)
            except Exception as exc:
                response = SubcallResponse.failure(
                    len(request.prompts), str(exc), type(exc).__name__, raised=True
                )
            inbox.put(("subcall_done", token, response))

        threading.Thread(target=work, daemon=True).start()

    def _serve_tool(self, frame: wire.ToolCall) -> None:
        """Start a tool call (the handler answers on a thread of its own, through the inbox)."""
        tools = self._spec.tools
        if tools is None:
            self._refuse_tool(frame.id, "this REPL has no tools", "ToolError")
            return
        if len(self._tools_pending) >= MAX_IN_FLIGHT:
            why = f"more than {MAX_IN_FLIGHT} tool calls of this REPL are in flight"
            self._refuse_tool(frame.id, why, "ToolLimitExceeded")
            return
        token = next(self._tokens)
        self._tools_pending[token] = frame.id
        inbox = self._inbox
        assert inbox is not None
        tools.submit(frame.request, lambda response: inbox.put(("tool_done", token, response)))

    def _refuse_tool(self, ident: int, why: str, kind: str = "CellTimeout") -> None:
        self._send(wire.ToolResult(ident, ToolResponse.failure(f"cancelled: {why}", kind)))

    def _interrupt(self, pending: dict[int, tuple[int, int]], output_limit: int) -> CellResult:
        """The deadline passed: cancel its sub-calls, SIGINT, then kill if it does not yield."""
        self._cell.set(self._cell.reason or "the cell ran out of time")
        for ident, n in pending.values():
            self._refuse(ident, n)
        pending.clear()
        for ident in self._tools_pending.values():
            self._refuse_tool(ident, "the cell ran out of time")
        self._tools_pending.clear()
        if self._launched is not None:
            self._source.interrupt(self._launched)
        until = time.monotonic() + self._source.grace_s
        while (left := until - time.monotonic()) > 0:
            try:
                kind, payload, _ = self._take(left)
            except queue.Empty:
                break
            if kind in ("eof", "broken"):
                break
            if kind != "frame":
                continue  # a sub-call finishing late: it was refused already
            if isinstance(payload, wire.Result):
                payload.cell.timed_out = True
                return payload.cell
            if not self._refuse_late(payload):
                break  # a frame this state does not allow: the worker is killed below
        cell = self._lost(
            "the cell ran past its time limit and did not stop when interrupted; "
            "the REPL was killed",
            output_limit,
        )
        cell.timed_out = True
        return cell

    def _refuse_late(self, frame: object) -> bool:
        """Refuse a request sent while the cell is being stopped; False for any other frame."""
        if isinstance(frame, wire.ToolCall):
            self._refuse_tool(frame.id, "the cell ran out of time")
        elif isinstance(frame, wire.Subcall | wire.Background):
            self._refuse(frame.id, _prompts_of(frame))
        else:
            return False
        return True

    def _refuse(
        self, ident: int, n: int, why: str = "the cell ran out of time", kind: str = "CellTimeout"
    ) -> None:
        """Answer a sub-call without making it (one error per prompt); ``n`` < 0: a background
        request, answered with a refused status."""
        if n < 0:
            status = BackgroundStatus.refusal(f"cancelled: {why}", kind)
            self._send(wire.BackgroundResult(ident, status))
            return
        refused = SubcallResponse.failure(max(1, n), f"cancelled: {why}", kind)
        self._send(wire.SubcallResult(ident, refused))

    def _lost(self, why: str, output_limit: int) -> CellResult:
        # the new worker starts with the next cell, not here: a run whose deadline killed this
        # one must end now, not after another worker's start (a second or more under gVisor)
        self._kill()
        return CellResult(
            error=f"{why}. A new REPL was started: `context` is there again, but every variable, "
            "import and function defined before is gone.",
            lost_state=True,
        )

    def get_var(self, name: str, *, deadline: float | None) -> str | None:
        if self._closed or self._proc is None:
            raise WorkerCrashed("the REPL is not running")
        with self._working():
            return self._get_var(name, deadline)

    def bind(self, name: str, value: Any, *, deadline: float | None) -> ContextMeta:
        if self._closed:
            raise SandboxError("this REPL session was closed")
        if not name.isidentifier():
            raise ValueError(f"cannot bind {name!r}: not an identifier")
        if self._proc is None:
            self._start()  # the worker was lost: a new one, with what was bound before
        self._bound[name] = value
        with self._working():
            until = time.monotonic() + 30 if deadline is None else deadline
            return self._bind(name, value, until)

    def _bind(self, name: str, value: Any, until: float) -> ContextMeta:
        self._send(wire.Bind(name, value))
        while True:
            got = self._next_frame(until)
            if isinstance(got, wire.Subcall):
                self._refuse(got.id, len(got.request.prompts), "no cell is running")
                continue
            if isinstance(got, wire.Bound):
                return got.meta
            what = self._crash_detail() if got is None else f"it sent a {got.op!r} frame"
            self._kill()
            raise WorkerCrashed(f"the worker did not answer bind ({what})")

    def _get_var(self, name: str, deadline: float | None) -> str | None:
        self._send(wire.GetVar(name))
        until = time.monotonic() + 30 if deadline is None else deadline
        while True:
            got = self._next_frame(until)
            if isinstance(got, wire.Subcall):
                # from a thread model code left running after its cell: no cell to serve it
                self._refuse(got.id, len(got.request.prompts), "no cell is running")
                continue
            if isinstance(got, wire.Background):
                status = BackgroundStatus.refusal("no cell is running", "SubcallError")
                self._send(wire.BackgroundResult(got.id, status))
                continue
            if isinstance(got, wire.ToolCall):
                self._refuse_tool(got.id, "no cell is running", "ToolError")
                continue
            if isinstance(got, wire.Var):
                return got.value
            what = self._crash_detail() if got is None else f"it sent a {got.op!r} frame"
            raise WorkerCrashed(f"the worker did not answer get_var ({what})")
