"""The one worker program every isolating environment runs.

    python -I path/to/worker.py READ_FD WRITE_FD

Frames (framing.py carries them, wire.py defines them), host -> worker: ``init``, ``exec``,
``get_var``, ``bind``, ``subcall_result``, ``background_result``, ``tool_result``,
``shutdown``. Worker -> host: ``ready`` or ``fatal``, ``result``, ``var``, ``bound``,
``subcall``, ``background``, ``tool_call``. ``ready`` also lists the confinement ``measures`` in
force (see hardening.py): the worker confines itself after loading the context (which it
memory-maps while it may still read the file) and before it runs any model code.

SIGINT is the host's "your cell is out of time": it raises CellInterrupted inside model code,
or, if it lands while a frame is being read or written, is held until the I/O is done so the
channel never desynchronises. A cell that ignores it is killed with its process group.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

if __name__ == "__main__":  # run as a file: make the package importable without PYTHONPATH
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recursor import context as ctx
from recursor.sandbox import lifetime, wire
from recursor.sandbox.base import (
    BackgroundRequest,
    BackgroundStatus,
    SubcallRequest,
    SubcallResponse,
)
from recursor.sandbox.framing import Channel
from recursor.sandbox.hardening import Hardener, Measure
from recursor.sandbox.hostcall import ToolRequest, ToolResponse
from recursor.sandbox.repl import CellInterrupted, HostCalls, Repl

_RLIMITS = {
    "address_space_bytes": resource.RLIMIT_AS,
    "cpu_seconds": resource.RLIMIT_CPU,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "processes": resource.RLIMIT_NPROC,
    "core_bytes": resource.RLIMIT_CORE,
}

_CPU_GRACE_S = 2


#: the frames the host sends once the worker is ready
def _out_of_cpu(_signum: int, _frame: Any) -> None:
    # the host shows the end of our stderr to the model as the reason the REPL died
    os.write(2, b"\nrecursor: the worker used up its CPU-time limit (RLIMIT_CPU) and exits\n")
    os._exit(152)


def apply_rlimits(limits: dict[str, int | None]) -> list[str]:
    """Lower soft and hard limits (never raise them); the names of those set."""
    done = []
    for key, value in limits.items():
        if value is None or key not in _RLIMITS:
            continue
        which = _RLIMITS[key]
        _soft, hard = resource.getrlimit(which)
        # CPU: SIGXCPU at the soft limit (we say why on stderr and exit), SIGKILL 2 s later
        want_hard = value + _CPU_GRACE_S if which == resource.RLIMIT_CPU else value
        new_hard = want_hard if hard == resource.RLIM_INFINITY else min(want_hard, hard)
        resource.setrlimit(which, (min(value, new_hard), new_hard))
        done.append(f"{key}={value}")
    return done


_FROM_HOST = (
    wire.Exec,
    wire.GetVar,
    wire.Bind,
    wire.SubcallResult,
    wire.BackgroundResult,
    wire.ToolResult,
    wire.Shutdown,
)


class Worker:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.repl: Repl | None = None
        self._in_io = False
        self._held_interrupt = False
        self._next_id = 0
        # sub-calls may come from several threads of model code (a ThreadPoolExecutor over
        # llm_query): one sends at a time, one reads at a time and hands results out by id
        self._send_lock = threading.Lock()
        self._cv = threading.Condition()
        self._reading = False
        self._results: dict[int, SubcallResponse | BackgroundStatus | ToolResponse] = {}
        #: sub-call ids a thread is waiting for; commands for the main loop, in order
        self._waiting: set[int] = set()
        self._commands: deque[wire.Frame] = deque()

    # SIGINT: interrupt the cell, but never in the middle of frame I/O.
    def on_sigint(self, _signum: int, _frame: Any) -> None:
        if self.repl is None or not self.repl.in_cell:
            return
        if self._in_io:
            self._held_interrupt = True
            return
        raise CellInterrupted

    def call_host(self, request: SubcallRequest) -> SubcallResponse:
        response = self._exchange(lambda ident: wire.Subcall(ident, request))
        assert isinstance(response, SubcallResponse)
        return response

    def call_background(self, request: BackgroundRequest) -> BackgroundStatus:
        status = self._exchange(lambda ident: wire.Background(ident, request))
        if not isinstance(status, BackgroundStatus):  # a host answering with another kind
            return BackgroundStatus.refusal(
                "the host answered a background call with another kind of result", "SubcallError"
            )
        return status

    def call_tool(self, request: ToolRequest) -> ToolResponse:
        response = self._exchange(lambda ident: wire.ToolCall(ident, request))
        if not isinstance(response, ToolResponse):  # a host answering with another kind
            return ToolResponse.failure("the host answered a tool call with another kind of result")
        return response

    def _exchange(
        self, make: Callable[[int], wire.Frame]
    ) -> SubcallResponse | BackgroundStatus | ToolResponse:
        """Send the frame ``make(id)`` and wait for the host's answer with that id."""
        # SIGINT only ever lands on the main thread: only its I/O needs shielding
        main = threading.current_thread() is threading.main_thread()
        with self._cv:
            self._next_id += 1
            ident = self._next_id
        if main:
            self._in_io = True
        try:
            with self._send_lock:
                self.channel.send(make(ident).to_wire())
            response = self._await(ident)
        finally:
            if main:
                self._in_io = False
        if main and self._held_interrupt:
            self._held_interrupt = False
            raise CellInterrupted
        return response

    def _await(self, ident: int) -> SubcallResponse | BackgroundStatus | ToolResponse:
        with self._cv:
            self._waiting.add(ident)
        try:
            self._read_until(lambda: ident in self._results)
            with self._cv:
                return self._results.pop(ident)
        finally:
            with self._cv:
                self._waiting.discard(ident)

    def _read_until(self, ready: Callable[[], bool]) -> None:
        """Read frames until ``ready()`` (checked under the lock) holds.

        The channel has ONE reader at a time, whichever thread needs a frame first: the main
        loop waiting for its next command, or a thread of model code waiting for a sub-call's
        result (a cell's own thread, or one it left running past the cell). Two readers on one
        fd would tear frames apart. The reader files each frame where it belongs (a result by
        id, a command in the queue) and wakes the others; a result nobody waits for any more
        (its cell was stopped) is dropped.
        """
        with self._cv:
            while not ready():
                if not self._reading:
                    self._reading = True
                    break
                self._cv.wait()
            else:
                return
        try:
            while True:
                raw = self.channel.recv()
                if raw is None:
                    os._exit(0)  # the host is gone; nothing left to do
                frame = wire.parse(raw, _FROM_HOST)
                with self._cv:
                    if isinstance(frame, (wire.SubcallResult, wire.ToolResult)):
                        if frame.id in self._waiting:
                            self._results[frame.id] = frame.response
                    elif isinstance(frame, wire.BackgroundResult):
                        if frame.id in self._waiting:
                            self._results[frame.id] = frame.status
                    else:
                        self._commands.append(frame)
                    self._cv.notify_all()
                    if ready():
                        return
        finally:
            with self._cv:
                self._reading = False
                self._cv.notify_all()

    def send(self, frame: wire.Frame) -> None:
        with self._send_lock:
            self.channel.send(frame.to_wire())

    def serve(self) -> None:
        raw = self.channel.recv()
        init = None if raw is None else wire.parse(raw, (wire.Init,))
        if not isinstance(init, wire.Init):
            return
        measures: list[Measure] = []
        try:
            rlimits = apply_rlimits(init.rlimits)
            value, bad = ctx.load(init.context_path, init.context_kind)
            meta = ctx.describe(value, decode_errors=bad, source=init.source)
            measures.append(Measure("rlimits", bool(rlimits), ", ".join(rlimits)))
            if init.sandbox is not None:
                measures += Hardener(init.sandbox, init.context_path).run()
            # after the setuid and user namespace of hardening, which cleared it
            measures.append(lifetime.rearm())
        except Exception as exc:
            self.send(wire.Fatal(f"{type(exc).__name__}: {exc}"))
            return
        host = HostCalls(
            self.call_host,
            self.call_background if init.background else None,
            self.call_tool,
            init.tools or (),
        )
        self.repl = Repl(value, host, own_process=True)
        del value
        self.send(wire.Ready(meta, os.getpid(), measures))
        while True:
            self._read_until(lambda: bool(self._commands))
            with self._cv:
                frame = self._commands.popleft()
            if isinstance(frame, wire.Shutdown):
                return
            if isinstance(frame, wire.Exec):
                self._held_interrupt = False
                cell = self.repl.execute(frame.code, frame.output_limit)
                self.send(wire.Result(cell))
            elif isinstance(frame, wire.GetVar):
                self.send(wire.Var(self.repl.get_var(frame.name)))
            elif isinstance(frame, wire.Bind):
                self.repl.bind(frame.name, frame.value)
                self.send(wire.Bound(ctx.describe(frame.value)))


def main(argv: list[str] | None = None) -> None:
    """``READ_FD WRITE_FD [PARENT_PID]``: the channel, and the pid our parent should have (we
    die with it; absent where a pid namespace hides it)."""
    args = sys.argv[1:] if argv is None else argv
    lifetime.die_with_parent(int(args[2]) if len(args) > 2 else None)
    read_fd, write_fd = int(args[0]), int(args[1])
    if read_fd in (0, 1, 2) or write_fd in (0, 1, 2):
        # the channel came as stdio (runsc passes no other fds): move it away, so that a stray
        # print of ours or of model code can never write into the frame stream
        read_fd, write_fd = os.dup(read_fd), os.dup(write_fd)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
    worker = Worker(Channel(read_fd, write_fd))
    signal.signal(signal.SIGINT, worker.on_sigint)
    signal.signal(signal.SIGXCPU, _out_of_cpu)
    worker.serve()


if __name__ == "__main__":
    main()
