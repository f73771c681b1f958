"""The in-process environment: fastest, and for TRUSTED input only.

Model code runs with the host's full authority: it can read your files, your environment
(API keys included) and open sockets. Use it when you wrote the query and trust the context;
use ``subprocess`` (the default) or a hardened environment otherwise.

Each cell runs on a thread of its own so a deadline can be enforced: a cell past it gets an
asynchronous CellInterrupted (delivered between bytecodes; a cell blocked inside one C call
stops when that call returns). If it has not stopped after ``grace_s`` it is abandoned, and
the namespace is replaced by a fresh one, as a killed worker would be. stdout and stderr are
routed per thread, so concurrent children never mix their output.
"""

from __future__ import annotations

import ctypes
import threading
import time
from concurrent.futures import Future

from recursor.context import ContextMeta, describe
from recursor.sandbox.base import CellResult, SessionSpec, SubcallRequest, SubcallResponse
from recursor.sandbox.repl import CellInterrupted, Repl


class InProcessEnvironment:
    name = "inprocess"

    def __init__(self, *, grace_s: float = 1.0) -> None:
        self.grace_s = grace_s

    def open(self, spec: SessionSpec) -> InProcessSession:
        return InProcessSession(self, spec)


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
        self._repl = Repl(value, self._call_host, own_process=False)

    @property
    def meta(self) -> ContextMeta:
        return self._meta

    def _call_host(self, request: SubcallRequest) -> SubcallResponse:
        """Serve a sub-call on another thread and wait in short slices, so that an interrupt
        raised into the cell's thread is delivered even while the sub-call hangs."""
        fut: Future[SubcallResponse] = Future()

        def work() -> None:
            try:
                fut.set_result(self._spec.handler(request))
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
        thread = threading.Thread(
            target=lambda: box.append(repl.execute(code, output_limit)), daemon=True
        )
        thread.start()
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if not thread.is_alive():
            return box[0]
        until = time.monotonic() + self._env.grace_s
        while thread.is_alive() and time.monotonic() < until:
            if repl.in_cell:
                _raise_in_thread(thread)
            thread.join(0.05)
        if box:
            box[0].timed_out = True
            return box[0]
        # The cell ignores interrupts: abandon its thread and start over with a clean namespace.
        self._repl = Repl(self._value, self._call_host, own_process=False)
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

    def close(self) -> None:
        self._value = None
