"""Blocking calls a run may give up on: a model call past the run's deadline, or one whose
run was stopped (a child whose parent cell ended, a stream its reader left)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from recursor._cancel import POLL_S, Cancel
from recursor.errors import LMError, RecursorError, RunTimeout, SubcallError
from recursor.limits import Ledger

T = TypeVar("T")


def as_recursor_error(exc: Exception) -> RecursorError:
    if isinstance(exc, RecursorError):
        return exc
    err = LMError(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def deadline_passed(ledger: Ledger) -> RunTimeout:
    exc = RunTimeout(f"timeout_s={ledger.limits.timeout_s} elapsed during a model call")
    ledger.hits.append(exc)
    return exc


class _Call:
    """One blocking call on a daemon thread that its caller may give up waiting for."""

    def __init__(self, fn: Callable[[], Any], late: Callable[[Any], None] | None) -> None:
        self.fn = fn
        self.late = late
        self.box: list[tuple[bool, Any]] = []
        self.lock = threading.Lock()
        self.abandoned = False

    def run(self) -> None:
        try:
            outcome: tuple[bool, Any] = (True, self.fn())
        except BaseException as exc:
            outcome = (False, exc)
        with self.lock:
            self.box.append(outcome)
            abandoned = self.abandoned
        if abandoned:
            self._late(outcome)

    def abandon(self, exc: BaseException) -> BaseException:
        """Give up waiting; ``exc`` is what the caller raises."""
        with self.lock:
            self.abandoned = True
            arrived = self.box[0] if self.box else None
        if arrived is not None:  # it returned as we gave up: the engine will not see it
            self._late(arrived)
        return exc

    def _late(self, outcome: tuple[bool, Any]) -> None:
        ok, value = outcome
        if ok and self.late is not None:
            self.late(value)


def call_with_deadline(
    fn: Callable[[], T],
    remaining: float | None,
    ledger: Ledger,
    cancel: Cancel | None,
    late: Callable[[T], None] | None = None,
) -> T:
    """``fn()``, abandoned at the run deadline (a hung backend must not hang the run) or when
    ``cancel`` is set (a child run whose parent cell was stopped, a stream left early).

    An abandoned call goes on in its daemon thread, holding nothing of the run (the worker is
    not its to keep); if it returns after all, ``late`` gets what it returned (the tokens it
    spent are still counted)."""
    if remaining is None and cancel is None:
        return fn()
    call = _Call(fn, late)
    t = threading.Thread(target=call.run, daemon=True, name="recursor-model-call")
    t.start()
    until = None if remaining is None else time.monotonic() + remaining
    while not call.box:
        left = None if until is None else until - time.monotonic()
        if left is not None and left <= 0:
            raise call.abandon(deadline_passed(ledger))
        if cancel is not None and cancel.is_set():
            raise call.abandon(SubcallError(f"cancelled: {cancel.reason}"))
        t.join(POLL_S if left is None else min(left, POLL_S))
    ok, value = call.box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
