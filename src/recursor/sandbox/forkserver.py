"""A fork server: one pre-started, pre-imported parent that forks each worker on demand.

    python -I forkserver.py CONTROL_FD

The host talks to it over a unix socketpair (never a port): a request carries the worker's
two channel fds and its stderr fd (SCM_RIGHTS) and the scratch directory; the server forks,
the child becomes a session leader in that directory and runs the worker program exactly as
``worker.py`` would (so it confines itself the same way once its ``init`` frame comes), and
the server answers ``{"pid": ...}``. When a child exits the server reaps it and reports
``{"exit": pid, "status": ...}``, which is what :class:`ForkedProcess` (the host's stand-in
for a ``Popen``) waits on.

Why: a fork of an interpreter that has already imported the worker costs ~2 ms against
~50 ms for a fresh ``python -I``, and unlike the single spare worker of
:class:`~recursor.sandbox.subprocess.SubprocessEnvironment` it stays fast for a burst (a
batch of child RLMs opening ten REPLs at once). The server itself never runs model code.
Shortcut: workers are forked before their context is known, so the context is not shared
copy-on-write between them; each maps its own file (the page cache shares it anyway).
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import weakref
from typing import Any

if __name__ == "__main__":  # run as a file: make the package importable without PYTHONPATH
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recursor.sandbox.environment import WorkerEnvironment
from recursor.sandbox.hardening import Measure
from recursor.sandbox.launch import (
    ExitLatch,
    Launched,
    Spawned,
    SpawnRequest,
    Traits,
    on_lasting_thread,
    sigint,
    worker_env,
)

_MAX_MSG = 4096


# -- the server (its own process) ---------------------------------------------------------------


def _serve(ctrl: socket.socket) -> None:
    from recursor.sandbox import worker  # everything a worker needs, imported once

    server_pid = os.getpid()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        ready, _, _ = select.select([ctrl.fileno(), wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(ctrl)
        if ctrl.fileno() not in ready:
            continue
        fds = array.array("i")
        msg, anc, _flags, _addr = ctrl.recvmsg(_MAX_MSG, socket.CMSG_SPACE(3 * fds.itemsize))
        if not msg:
            return  # the host is gone: so are we (our children notice their pipes close)
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        request = json.loads(msg)
        read_fd, write_fd, err_fd = fds
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.setsid()
                ctrl.close()
                os.close(wake_r)
                os.close(wake_w)
                os.dup2(err_fd, 2)
                os.close(err_fd)
                os.chdir(request["scratch"])
                # a fork does not inherit the parent-death signal: worker.main arms it anew
                worker.main([str(read_fd), str(write_fd), str(server_pid)])
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        ctrl.send(json.dumps({"pid": pid}).encode())


def _reap(ctrl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        ctrl.send(json.dumps({"exit": pid, "status": code}).encode())


# -- the host's side ----------------------------------------------------------------------------


class ForkedProcess(ExitLatch):
    """What the host holds for a forked worker: the parts of ``Popen`` sessions use; the fork
    server reports its exit."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"worker {pid}")
        self.pid = pid


class ForkServer:
    """Starts the server process and asks it for workers (thread-safe)."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = host
        # the server dies with the thread that forked it (its parent-death signal): a lasting one
        self._proc = on_lasting_thread(
            subprocess.Popen,
            [python, "-I", os.path.abspath(__file__), str(child.fileno()), str(os.getpid())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        child.close()
        self._lock = threading.Lock()
        self._replies: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        self._procs: dict[int, ForkedProcess] = {}
        self._early: dict[int, int] = {}
        threading.Thread(target=self._read, daemon=True, name="recursor-forkserver").start()

    def _read(self) -> None:
        while True:
            try:
                msg = self._sock.recv(_MAX_MSG)
            except OSError:
                msg = b""
            if not msg:
                with self._cv:
                    self._replies.append({"error": "the fork server exited"})
                    self._cv.notify_all()
                    procs, self._procs = list(self._procs.values()), {}
                for p in procs:
                    p.exited(-signal.SIGKILL)
                return
            data = json.loads(msg)
            with self._cv:
                if "exit" in data:
                    proc = self._procs.pop(data["exit"], None)
                    if proc is None:
                        self._early[data["exit"]] = data["status"]
                    else:
                        proc.exited(data["status"])
                else:
                    self._replies.append(data)
                    self._cv.notify_all()

    def fork(self, read_fd: int, write_fd: int, err_fd: int, scratch: str) -> ForkedProcess:
        payload = json.dumps({"scratch": scratch}).encode()
        fds = array.array("i", [read_fd, write_fd, err_fd])
        with self._lock:
            self._sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            with self._cv:
                while not self._replies:
                    if not self._cv.wait(30):
                        raise OSError("the fork server did not answer")
                reply = self._replies.pop(0)
                if "pid" not in reply:
                    raise OSError(reply.get("error", "the fork server failed"))
                proc = ForkedProcess(int(reply["pid"]))
                if proc.pid in self._early:
                    proc.exited(self._early.pop(proc.pid))
                else:
                    self._procs[proc.pid] = proc
        return proc

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        self._sock.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


class ForkServerLauncher:
    """Workers forked by a :class:`ForkServer` (restarted should it die)."""

    traits = Traits(prestart=True, pausable=True)

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self._lock = threading.Lock()
        self._server = ForkServer(python, worker_env())
        self._stop_server = weakref.finalize(self, ForkServer.close, self._server)

    def _live_server(self) -> ForkServer:
        with self._lock:
            if not self._server.alive:
                self._stop_server()
                self._server = ForkServer(self.python, worker_env())
                self._stop_server = weakref.finalize(self, ForkServer.close, self._server)
            return self._server

    def spawn(self, request: SpawnRequest) -> Spawned:
        """Fork the worker from the pre-imported server instead of starting an interpreter."""
        server = self._live_server()
        return Spawned(
            server.fork(request.read_fd, request.write_fd, request.stderr.fileno(), request.cwd)
        )

    def on_ready(self, launched: Launched) -> list[Measure]:
        return [Measure("fork server", True, "worker forked from a pre-imported parent")]

    def interrupt(self, launched: Launched) -> None:
        sigint(launched)

    def close(self) -> None:
        self._stop_server()


class ForkServerEnvironment(WorkerEnvironment):
    """The hardened subprocess environment, its workers forked by a :class:`ForkServer`.

    Everything else (confinement, cgroups, deadlines, restarts) is the shared machinery's;
    only the launcher differs.
    """

    name = "forkserver"

    def __init__(self, *, python: str = sys.executable, **kw: Any) -> None:
        kw.setdefault("prestart", False)  # a fork is as quick as taking a spare
        self.python = python
        super().__init__(ForkServerLauncher(python), **kw)


def main() -> None:
    """``CONTROL_FD HOST_PID``: the server dies with the host (and its workers with it)."""
    from recursor.sandbox import lifetime

    lifetime.die_with_parent(int(sys.argv[2]) if len(sys.argv) > 2 else None)
    _serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
