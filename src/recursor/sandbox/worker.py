"""The one worker program every isolating environment runs.

    python -I path/to/worker.py READ_FD WRITE_FD

Frames (see framing.py), host -> worker: ``init`` {context_path, context_kind, rlimits},
``exec`` {code, output_limit}, ``get_var`` {name}, ``subcall_result`` {id, response},
``shutdown``. Worker -> host: ``ready`` {meta} or ``fatal`` {error}, ``result`` {cell},
``var`` {value}, ``subcall`` {id, request}.

SIGINT is the host's "your cell is out of time": it raises CellInterrupted inside model code,
or, if it lands while a frame is being read or written, is held until the I/O is done so the
channel never desynchronises. A cell that ignores it is killed with its process group.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from typing import Any

if __name__ == "__main__":  # run as a file: make the package importable without PYTHONPATH
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recursor import context as ctx
from recursor.sandbox.base import SubcallRequest, SubcallResponse
from recursor.sandbox.framing import Channel
from recursor.sandbox.repl import CellInterrupted, Repl

_RLIMITS = {
    "address_space_bytes": resource.RLIMIT_AS,
    "cpu_seconds": resource.RLIMIT_CPU,
    "file_size_bytes": resource.RLIMIT_FSIZE,
}


def apply_rlimits(limits: dict[str, int | None]) -> None:
    for key, value in limits.items():
        if value is None:
            continue
        which = _RLIMITS[key]
        _soft, hard = resource.getrlimit(which)
        new_hard = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (min(value, new_hard), new_hard))


class Worker:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.repl: Repl | None = None
        self._in_io = False
        self._held_interrupt = False
        self._next_id = 0

    # SIGINT: interrupt the cell, but never in the middle of frame I/O.
    def on_sigint(self, _signum: int, _frame: Any) -> None:
        if self.repl is None or not self.repl.in_cell:
            return
        if self._in_io:
            self._held_interrupt = True
            return
        raise CellInterrupted

    def call_host(self, request: SubcallRequest) -> SubcallResponse:
        self._next_id += 1
        ident = self._next_id
        self._in_io = True
        try:
            self.channel.send({"op": "subcall", "id": ident, "request": request.to_dict()})
            while True:
                frame = self.channel.recv()
                if frame is None:
                    os._exit(0)  # the host is gone; nothing left to do
                if frame["op"] == "subcall_result" and frame["id"] == ident:
                    break
        finally:
            self._in_io = False
        if self._held_interrupt:
            self._held_interrupt = False
            raise CellInterrupted
        return SubcallResponse.from_dict(frame["response"])

    def serve(self) -> None:
        init = self.channel.recv()
        if init is None or init["op"] != "init":
            return
        try:
            apply_rlimits(init.get("rlimits", {}))
            value, bad = ctx.load(init["context_path"], init["context_kind"])
            meta = ctx.describe(value, decode_errors=bad, source=init.get("source"))
        except Exception as exc:
            self.channel.send({"op": "fatal", "error": f"{type(exc).__name__}: {exc}"})
            return
        self.repl = Repl(value, self.call_host, own_process=True)
        del value
        self.channel.send({"op": "ready", "meta": meta.to_dict(), "pid": os.getpid()})
        while True:
            frame = self.channel.recv()
            if frame is None or frame["op"] == "shutdown":
                return
            if frame["op"] == "exec":
                self._held_interrupt = False
                cell = self.repl.execute(frame["code"], int(frame["output_limit"]))
                self.channel.send({"op": "result", "cell": cell.to_dict()})
            elif frame["op"] == "get_var":
                self.channel.send({"op": "var", "value": self.repl.get_var(frame["name"])})
            # a late subcall_result for a cancelled cell is dropped here


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    worker = Worker(Channel(int(args[0]), int(args[1])))
    signal.signal(signal.SIGINT, worker.on_sigint)
    worker.serve()


if __name__ == "__main__":
    main()
