"""Sub-calls that run in the background: ``llm_query_async`` and friends, host side.

A REPL's worker is stopped (SIGSTOP) between cells, so a call that must outlive its cell cannot
run in the worker: it runs here, on the host, one thread per start request, through the same
:class:`~recursor.broker.Broker` as a blocking call (so the same limits, cache, retries and
trace). The worker holds only handle ids and asks for their state (``wait``).

* Budgets are reserved when the call starts (the broker reserves ``max_subcalls`` as it begins,
  before the start request is answered).
* Handles are per REPL, numbered from 1; an unknown or forged id is refused with a clean error,
  and at most :data:`MAX_HANDLES` are handed out per REPL, so model code cannot make the host
  start threads without end.
* :meth:`BackgroundCalls.close` (the run is over) cancels what is still pending: calls queued in
  the broker never start and give back their reservation, calls in flight are abandoned. It
  waits for the threads, so none is left behind.
* :meth:`BackgroundCalls.finished_notes` lists the calls finished since it was last called: the
  engine puts them in the next observation, so the root hears of them without polling.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from recursor._cancel import POLL_S, Cancel, current, scope
from recursor.errors import SubcallError, SubcallLimitExceeded
from recursor.sandbox.base import (
    BackgroundRequest,
    BackgroundStatus,
    SubcallHandler,
    SubcallRequest,
    SubcallResponse,
)
from recursor.trace import BackgroundFinished, BackgroundStarted, Trace

#: handles one REPL may hold over its life
MAX_HANDLES = 4096
#: seconds close() waits for the threads of cancelled calls to return
_CLOSE_TIMEOUT_S = 10.0
#: characters of a finished call's answer shown in an observation
_NOTE_CHARS = 80


@dataclass(slots=True)
class _Call:
    done: bool = False
    result: str | None = None
    error: str | None = None
    error_type: str | None = None


class BackgroundCalls:
    """The background sub-calls of one REPL. Thread-safe; the seam is ``__call__``."""

    def __init__(
        self,
        handler: SubcallHandler,
        *,
        cancel: Cancel,
        trace: Trace,
        run_id: str,
        first_id: int = 1,
    ) -> None:
        self._handler = handler
        #: the first handle id given out: a conversation's next ask starts after the last one
        #: of the ask before, so a handle kept from an ended ask is unknown, never another call
        self._first_id = first_id
        #: set by close(), or with the run: every pending call stops
        self.cancel = Cancel(cancel)
        self._trace = trace
        self._run_id = run_id
        self._cond = threading.Condition()
        self._calls: dict[int, _Call] = {}
        self._unreported: list[int] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    def __call__(self, request: BackgroundRequest) -> BackgroundStatus:
        if request.op == "start":
            if request.request is None:
                return BackgroundStatus.refusal("start needs a request", SubcallError.__name__)
            return self.start(request.request)
        return self.wait(request.handles, request.timeout, first=request.first)

    # -- starting ---------------------------------------------------------------------------------
    def start(self, request: SubcallRequest) -> BackgroundStatus:
        n = len(request.prompts)
        with self._cond:
            if self._closed or self.cancel.is_set():
                return BackgroundStatus.refusal(
                    "the run is over: no background call can start", SubcallError.__name__
                )
            if len(self._calls) + n > MAX_HANDLES:
                return BackgroundStatus.refusal(
                    f"at most {MAX_HANDLES} background calls per REPL; "
                    f"{len(self._calls)} were started already",
                    SubcallLimitExceeded.__name__,
                )
            first = self._first_id + len(self._calls)
            handles = list(range(first, first + n))
            for h in handles:
                self._calls[h] = _Call()
            thread = threading.Thread(
                target=self._run, args=(request, handles), name="recursor-background", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        self._trace.emit(BackgroundStarted(self._run_id, kind=request.kind, handles=handles))
        thread.start()
        return self._status(handles)

    def _run(self, request: SubcallRequest, handles: list[int]) -> None:
        try:
            with scope(self.cancel):
                response = self._handler(request)
        except Exception as exc:
            response = SubcallResponse.failure(len(handles), str(exc), type(exc).__name__)
        with self._cond:
            for i, h in enumerate(handles):
                call = self._calls[h]
                call.done = True
                call.result = response.results[i]
                call.error = response.errors[i]
                call.error_type = response.error_types[i]
                self._unreported.append(h)
            self._cond.notify_all()
        cancelled = self.cancel.is_set()
        for i, h in enumerate(handles):
            self._trace.emit(
                BackgroundFinished(
                    self._run_id, handle=h, error=response.errors[i], cancelled=cancelled
                )
            )

    # -- waiting ----------------------------------------------------------------------------------
    def wait(self, handles: list[int], timeout: float | None, *, first: bool) -> BackgroundStatus:
        with self._cond:
            unknown = [h for h in handles if h not in self._calls]
        if unknown:
            return BackgroundStatus.refusal(
                f"unknown background handle id(s) {unknown[:5]}: use the handles that "
                "llm_query_async / llm_query_batched_async / rlm_query_async returned",
                SubcallError.__name__,
            )
        # the waiting cell's scope: a cell stopped at its deadline stops waiting too
        cell = current()
        until = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                states = [self._calls[h].done for h in handles]
                if not handles or (any(states) if first else all(states)):
                    break
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    break
                if self.cancel.is_set() or (cell is not None and cell.is_set()):
                    break
                self._cond.wait(POLL_S if left is None else min(left, POLL_S))
        return self._status(handles)

    def _status(self, handles: list[int]) -> BackgroundStatus:
        with self._cond:
            calls = [self._calls[h] for h in handles]
            return BackgroundStatus(
                list(handles),
                [c.done for c in calls],
                [c.result for c in calls],
                [c.error for c in calls],
                [c.error_type for c in calls],
            )

    # -- the engine's view ------------------------------------------------------------------------
    def finished_notes(self) -> list[str]:
        """One line per background call finished since the last time this was called."""
        with self._cond:
            ids, self._unreported = self._unreported, []
            calls = [(h, self._calls[h]) for h in ids]
            pending = sum(not c.done for c in self._calls.values())
        if not calls:
            return []
        lines = []
        for h, c in calls:
            if c.error is not None:
                lines.append(f"  #{h}: failed: {c.error[:_NOTE_CHARS]}")
            else:
                text = (c.result or "").replace("\n", " ")
                more = "…" if len(text) > _NOTE_CHARS else ""
                lines.append(
                    f"  #{h}: done ({len(c.result or '')} chars): {text[:_NOTE_CHARS]}{more}"
                )
        head = (
            f"Background calls finished since your last turn: {len(calls)} "
            f"({pending} still running). Collect them with h.result() or wait(handles)."
        )
        shown = lines[:20] + ([f"  ... and {len(lines) - 20} more"] if len(lines) > 20 else [])
        return [head, *shown]

    @property
    def next_id(self) -> int:
        """The id the next call started here would get."""
        with self._cond:
            return self._first_id + len(self._calls)

    @property
    def pending(self) -> int:
        with self._cond:
            return sum(not c.done for c in self._calls.values())

    def close(self) -> None:
        """Cancel what is pending (queued calls never start; their reservations are given
        back by the broker) and wait for the threads. Idempotent."""
        with self._cond:
            self._closed = True
            threads = list(self._threads)
            self._cond.notify_all()
        self.cancel.set("the run ended")
        until = time.monotonic() + _CLOSE_TIMEOUT_S
        for t in threads:
            t.join(max(0.0, until - time.monotonic()))
