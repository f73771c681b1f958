"""The in-process environment: fastest, and for TRUSTED input only.

Model code runs with the host's full authority: it can read your files, your environment
(API keys included) and open sockets. Use it when you wrote the query and trust the context;
use ``subprocess`` (the default) or a hardened environment otherwise.

So it refuses to start (:class:`~recursor.errors.ConfigurationError`) while a provider key is
in ``os.environ`` (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, any ``*_API_KEY``, ``*_TOKEN``
or ``*_SECRET*``): model code would read it in one line. Trust is said explicitly, on the
object: ``RLM(..., environment=InProcessEnvironment(trusted=True))``; the name
``"inprocess"`` alone never means trusted.

Each cell runs on a thread of its own so a deadline can be enforced: a cell past it gets an
asynchronous CellInterrupted (delivered between bytecodes; a cell blocked inside one C call
stops when that call returns). If it has not stopped after ``grace_s`` it is abandoned, and
the namespace is replaced by a fresh one, as a killed worker would be. stdout and stderr are
routed per thread, so concurrent children never mix their output.

Each cell has a cancel scope (:mod:`recursor._cancel`) under the one the caller runs in; the
sub-calls it makes are served under it. A deadline, or the caller's scope being set (a child
RLM whose parent cell was stopped), sets it: the sub-calls still queued or in flight in the
broker stop, not only the cell.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from recursor._cancel import POLL_S, Cancel, current, scope
from recursor.context import ContextMeta, describe
from recursor.errors import ConfigurationError
from recursor.sandbox.base import (
    BackgroundRequest,
    BackgroundStatus,
    CellResult,
    SessionSpec,
    SubcallRequest,
    SubcallResponse,
)
from recursor.sandbox.hostcall import ToolRequest, ToolResponse, copy_json
from recursor.sandbox.repl import CellInterrupted, HostCalls, Repl

T = TypeVar("T")

#: environment variable names that hold a provider key or another credential
_KEY_NAME = re.compile(r"(_API_KEY|_TOKEN)$|_SECRET", re.IGNORECASE)


def keys_in_environment() -> list[str]:
    """The names (never the values) of the credential variables set in ``os.environ``."""
    return sorted(name for name, value in os.environ.items() if value and _KEY_NAME.search(name))


class InProcessEnvironment:
    """Model code in this process, on a thread. ``trusted=True`` says you trust the model and
    the context with everything this process holds, keys included (see the module's doc)."""

    name = "inprocess"

    def __init__(self, *, grace_s: float = 1.0, trusted: bool = False) -> None:
        self.grace_s = grace_s
        self.trusted = trusted
        self._check()

    def _check(self) -> None:
        if self.trusted:
            return
        found = keys_in_environment()
        if found:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise ConfigurationError(
                f"the inprocess environment will not start while {shown} is set: model code "
                "runs in this process and could read it from os.environ. Use an isolating "
                "environment (environment='subprocess', the default; or bwrap, forkserver, "
                "...), or unset the variable; or, if you trust the model and the context with "
                "this process's keys, say so: from recursor.sandbox import "
                "InProcessEnvironment; RLM(..., environment=InProcessEnvironment(trusted=True))."
            )

    def open(self, spec: SessionSpec) -> InProcessSession:
        self._check()  # a key may have been set since this environment was made
        return InProcessSession(self, spec)

    def close(self) -> None:
        """Nothing is kept between sessions."""


def _raise_in_thread(thread: threading.Thread) -> None:
    ident = thread.ident
    if ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(CellInterrupted)
        )


class InProcessSession:
    def __init__(self, env: InProcessEnvironment, spec: SessionSpec) -> None:
        self._env = env
        self._spec = spec
        value, bad = spec.context.value()
        self._meta = describe(value, decode_errors=bad, source=spec.context.source)
        self._value = value
        #: values bound with :meth:`bind`, bound again in a fresh namespace
        self._bound: dict[str, Any] = {}
        self._repl = self._new_repl()
        #: the scope of the cell running (or last run): sub-calls are made under it
        self._cell = Cancel()

    @property
    def meta(self) -> ContextMeta:
        return self._meta

    def _new_repl(self) -> Repl:
        background = self._call_background if self._spec.background is not None else None
        host = HostCalls(
            self._call_host,
            background,
            self._call_tool,
            () if self._spec.tools is None else self._spec.tools.names,
        )
        repl = Repl(self._value, host, own_process=False)
        for name, value in self._bound.items():  # bound values outlive a restart, as context does
            repl.bind(name, value)
        return repl

    def _call_tool(self, request: ToolRequest) -> ToolResponse:
        """A tool call, with the same JSON copies a worker channel would make (the tool cannot
        reach model code's objects, nor model code the tool's), waited for in short slices so
        an interrupt still reaches the cell."""
        tools = self._spec.tools
        if tools is None:
            return ToolResponse.failure("this REPL has no tools")
        fut: Future[ToolResponse] = Future()
        copied = ToolRequest(request.name, copy_json(request.args), copy_json(request.kwargs))
        tools.submit(copied, fut.set_result)
        while True:
            try:
                response = fut.result(timeout=0.05)
            except TimeoutError:
                continue
            return ToolResponse(copy_json(response.value), response.error, response.error_type)

    def _call_host(self, request: SubcallRequest) -> SubcallResponse:
        return self._off_thread(lambda: self._spec.handler(request))

    def _call_background(self, request: BackgroundRequest) -> BackgroundStatus:
        handler = self._spec.background
        assert handler is not None
        return self._off_thread(lambda: handler(request))

    def _off_thread(self, call: Callable[[], T]) -> T:
        """Serve a request on another thread and wait in short slices, so that an interrupt
        raised into the cell's thread is delivered even while the request hangs."""
        fut: Future[T] = Future()
        cell = self._cell

        def work() -> None:
            try:
                with scope(cell):
                    fut.set_result(call())
            except BaseException as exc:
                fut.set_exception(exc)

        threading.Thread(target=work, daemon=True).start()
        while True:
            try:
                return fut.result(timeout=0.05)
            except TimeoutError:
                continue

    def run(self, code: str, *, deadline: float | None, output_limit: int) -> CellResult:
        box: list[CellResult] = []
        repl = self._repl
        t0 = time.monotonic()
        cell = self._cell = Cancel(current())
        thread = threading.Thread(
            target=lambda: box.append(repl.execute(code, output_limit)), daemon=True
        )
        thread.start()
        while thread.is_alive() and not cell.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            thread.join(POLL_S if left is None else min(left, POLL_S))
        if not thread.is_alive():
            return box[0]
        # first the sub-calls (queued ones must not start while the cell is being stopped)
        cell.set(cell.reason or "the cell ran out of time")
        until = time.monotonic() + self._env.grace_s
        while thread.is_alive() and time.monotonic() < until:
            if repl.in_cell:
                _raise_in_thread(thread)
            thread.join(0.05)
        if box:
            box[0].timed_out = True
            return box[0]
        # The cell ignores interrupts: abandon its thread and start over with a clean namespace.
        self._repl = self._new_repl()
        return CellResult(
            error="the cell ran past its time limit and did not stop when interrupted; it was "
            "abandoned and a new REPL was started: `context` is there again, but every variable, "
            "import and function defined before is gone.",
            timed_out=True,
            lost_state=True,
            duration_s=time.monotonic() - t0,
        )

    def get_var(self, name: str, *, deadline: float | None) -> str | None:
        return self._repl.get_var(name)

    def bind(self, name: str, value: Any, *, deadline: float | None) -> ContextMeta:
        self._repl.bind(name, value)
        self._bound[name] = value
        return describe(value)

    def close(self) -> None:
        self._cell.set("the REPL was closed")
        self._value = None
