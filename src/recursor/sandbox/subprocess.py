"""The default environment: the worker program in a child process of its own.

The worker is started with ``sys.executable -I`` in a new session (so its whole process group
can be killed), talks frames over two pipes, memory-maps the context file, and runs under
rlimits (address space, CPU, file size) and a scrubbed environment (no API keys). While a cell
runs, the host serves the worker's sub-calls on threads and watches the deadline; a cell past
it gets SIGINT (its namespace survives), then, if it does not yield within ``grace_s``, the
process group is killed and a fresh worker started (the model is told its state was lost).
The cell's sub-calls are served under its cancel scope (:mod:`recursor._cancel`): at the
deadline, or when the worker dies, the broker stops those still queued or in flight too.
Frames from the worker are untrusted: bounded by ``WorkerLimits.frame_mb`` and checked before
use; a bad one costs the worker, never the host.

With ``hardened=True`` (the default) the worker also confines itself once its context is
loaded (see hardening.py: namespaces, an unprivileged uid, Landlock, seccomp, a scratch quota)
and the host puts it in memory/pids cgroups where they are writable. Every session reports the
measures in force (:attr:`WorkerSession.measures`; ``recursor doctor`` prints them). Other
launchers (bwrap, ...) subclass this and change :meth:`SubprocessEnvironment.command`.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from recursor._cancel import POLL_S, Cancel, current, scope
from recursor.context import ContextMeta
from recursor.errors import ProtocolError, SandboxError, WorkerCrashed
from recursor.sandbox import cgroups
from recursor.sandbox.base import CellResult, SessionSpec, SubcallRequest, SubcallResponse
from recursor.sandbox.framing import Channel
from recursor.sandbox.hardening import Measure

WORKER_PATH = Path(__file__).with_name("worker.py")
_MB = 1 << 20
#: variables passed to the worker; everything else (API keys above all) stays in the host
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """rlimits applied by the worker to itself before it loads the context or runs code."""

    memory_mb: int | None = 8192
    cpu_seconds: int | None = None
    file_size_mb: int | None = 1024
    open_files: int | None = 256
    #: threads count too (per uid; the hardened worker has a uid of its own)
    processes: int | None = 128
    #: size of the private tmpfs over the scratch directory (hardened workers)
    scratch_mb: int | None = 256
    #: the largest frame the host reads from the worker (a sub-call's prompts, a variable): a
    #: bound on what the worker can make the host allocate at once (not an rlimit)
    frame_mb: int = 1024

    def as_rlimits(self) -> dict[str, int | None]:
        return {
            "address_space_bytes": None if self.memory_mb is None else self.memory_mb * _MB,
            "cpu_seconds": self.cpu_seconds,
            "file_size_bytes": None if self.file_size_mb is None else self.file_size_mb * _MB,
            "open_files": self.open_files,
            "processes": self.processes,
            "core_bytes": 0,
        }


class WorkerProcess(Protocol):
    """What a session needs of its worker's process: a ``Popen``, or a fork server's child."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class ExitLatch:
    """``poll``/``wait`` for a worker whose exit is reported to us (by a fork server, by a
    vendor's SDK) instead of reaped with ``waitpid``: whoever learns the status calls
    :meth:`exited`."""

    def __init__(self, label: str) -> None:
        self.returncode: int | None = None
        self._done = threading.Event()
        self._label = label

    def exited(self, status: int) -> None:
        """Record the exit status and wake waiters."""
        self.returncode = status
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self._label, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode


@dataclass(slots=True)
class Launched:
    """A started worker process that has not been given its context yet."""

    proc: WorkerProcess
    channel: Channel
    stderr: IO[bytes]
    scratch: tempfile.TemporaryDirectory[str]
    cgroup: cgroups.CgroupLimit | None = None
    #: a launcher's own way to stop what it started, tried before the process-group kill
    stop: Callable[[], None] | None = None
    #: a launcher's own teardown (a container runtime's state), run after the process is reaped
    cleanup: Callable[[], None] | None = None

    def discard(self) -> None:
        if self.stop is not None and self.proc.poll() is None:
            self.stop()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.channel.close()
        self.stderr.close()
        self.scratch.cleanup()
        if self.cgroup is not None:
            self.cgroup.release()
        if self.cleanup is not None:
            self.cleanup()


class SubprocessEnvironment:
    """Each session is one worker process.

    ``grace_s``: how long an interrupted cell may take to stop before its process group is killed.
    ``prestart``: keep one spare worker started ahead (it is generic until its ``init`` frame
    names a context), so a completion does not wait for Python to start and import the worker.
    """

    name = "subprocess"
    #: the channel is the worker's stdin/stdout (launchers that pass no other fds: runsc)
    stdio_channel = False
    #: put each launched process in memory/pids cgroups (off where the launcher forks apart)
    use_cgroups = True

    def __init__(
        self,
        *,
        limits: WorkerLimits | None = None,
        python: str = sys.executable,
        grace_s: float = 1.0,
        start_timeout_s: float = 60.0,
        prestart: bool = True,
        hardened: bool = True,
    ) -> None:
        self.limits = limits or WorkerLimits()
        self.hardened = hardened
        self.python = python
        self.grace_s = grace_s
        self.start_timeout_s = start_timeout_s
        self.prestart = prestart
        self._spare: Launched | None = None
        self._spare_lock = threading.Lock()
        #: the thread starting the next spare, joined by close; after close no spare is started
        self._refilling: threading.Thread | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, SubprocessEnvironment._drop_spare, [None])

    def launch(self, spec: SessionSpec | None = None) -> Launched:
        """Start a worker process: pipes, a new session, a scratch directory as its cwd.

        ``spec`` is given when the launch itself depends on the session (a launcher that
        bind-mounts the context); the generic spare worker is launched without one. How the
        process comes to exist is :meth:`spawn`'s business; the rest is the same for all.
        """
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        stderr = tempfile.TemporaryFile()
        scratch = tempfile.TemporaryDirectory(prefix="recursor-repl-")
        try:
            proc = self.spawn(to_worker_r, from_worker_w, stderr, scratch.name, spec)
        except OSError as exc:
            for fd in (to_worker_w, from_worker_r):
                os.close(fd)
            stderr.close()
            scratch.cleanup()
            raise SandboxError(f"could not start the worker: {exc}") from exc
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        channel = Channel(from_worker_r, to_worker_w, max_frame=self.limits.frame_mb * _MB)
        launched = Launched(proc, channel, stderr, scratch)
        if self.hardened and self.use_cgroups and sys.platform == "linux":
            mem = self.limits.memory_mb
            launched.cgroup = cgroups.attach(
                proc.pid, None if mem is None else mem * _MB, self.limits.processes
            )
        return launched

    def spawn(
        self,
        read_fd: int,
        write_fd: int,
        stderr: IO[bytes],
        cwd: str,
        spec: SessionSpec | None,
    ) -> WorkerProcess:
        """Create the worker process with ``read_fd``/``write_fd``, in a new session, in ``cwd``."""
        stdio = self.stdio_channel
        return subprocess.Popen(
            self.command(0, 1, spec) if stdio else self.command(read_fd, write_fd, spec),
            pass_fds=() if stdio else (read_fd, write_fd),
            stdin=read_fd if stdio else subprocess.DEVNULL,
            stdout=write_fd if stdio else subprocess.DEVNULL,
            stderr=stderr,
            cwd=cwd,
            env=self.worker_env(),
            start_new_session=True,
        )

    def take(self, spec: SessionSpec | None = None) -> Launched:
        """The spare worker if there is a live one, else a new one; then start the next spare."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.proc.poll() is not None:
            spare.discard()
            spare = None
        launched = spare or self.launch()
        with self._spare_lock:
            if self.prestart and not self._closed:
                self._refilling = threading.Thread(target=self._refill, daemon=True)
                self._refilling.start()
        return launched

    def _refill(self) -> None:
        try:
            fresh = self.launch()
        except SandboxError:
            return
        with self._spare_lock:
            if self._closed:  # closed while this one started: nobody will take it
                old: Launched | None = fresh
            else:
                old, self._spare = self._spare, fresh
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, SubprocessEnvironment._drop_spare, [fresh])
        if old is not None:
            old.discard()

    @staticmethod
    def _drop_spare(box: list[Launched | None]) -> None:
        for launched in box:
            if launched is not None:
                launched.discard()

    def close(self) -> None:
        """Stop the spare worker, and start no other (it also exits by itself when this
        process ends). Sessions still open keep working."""
        with self._spare_lock:
            self._closed = True
            refilling = self._refilling
        if refilling is not None:
            refilling.join()  # a spare being started now is stopped before close returns
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()

    def command(self, read_fd: int, write_fd: int, spec: SessionSpec | None = None) -> list[str]:
        return [self.python, "-I", str(WORKER_PATH), str(read_fd), str(write_fd)]

    def sandbox_config(self) -> dict[str, Any] | None:
        """The init frame's ``sandbox`` section: what the worker does to itself (None: nothing)."""
        if not self.hardened:
            return None
        return {"scratch_mb": self.limits.scratch_mb}

    def host_measures(self, launched: Launched) -> list[Measure]:
        """What the host enforces around the worker."""
        keep = ", ".join(k for k in self.worker_env() if k != "PYTHONDONTWRITEBYTECODE")
        out = [
            Measure("scrubbed environment", True, f"only {keep} passed"),
            Measure(
                "process-group kill", True, f"SIGINT at the deadline, SIGKILL {self.grace_s}s later"
            ),
        ]
        if launched.cgroup is not None:
            out.append(Measure("cgroups", launched.cgroup.in_force, launched.cgroup.detail))
        return out

    def context_path(self, host_path: str) -> str:
        """Where the worker finds the context file (a launcher may mount it elsewhere)."""
        return host_path

    def interrupt_pid(self, launched: Launched) -> int:
        """The process that gets SIGINT when a cell is out of time (the worker itself)."""
        return launched.proc.pid

    def interrupt(self, launched: Launched, pid: int) -> None:
        """Tell the worker its cell is out of time (SIGINT; ``pid`` from interrupt_pid)."""
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def worker_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def open(self, spec: SessionSpec) -> WorkerSession:
        return WorkerSession(self, spec)


_Event = tuple[str, Any, Any]


def _subcall(frame: dict[str, Any]) -> tuple[int, SubcallRequest]:
    """The request id and request of a ``subcall`` frame, checked: it comes from model code.
    A malformed one raises TypeError/ValueError/KeyError (the caller drops the worker)."""
    ident, raw = frame["id"], frame["request"]
    if type(ident) is not int or not isinstance(raw, dict):
        raise TypeError("a subcall frame needs an integer id and a request object")
    if raw.get("kind") not in ("llm", "rlm") or not isinstance(raw.get("prompts"), list):
        raise ValueError("a request needs a kind of 'llm' or 'rlm' and a list of prompts")
    request = SubcallRequest.from_dict(raw)
    contexts = request.contexts
    if request.model is not None and not isinstance(request.model, str):
        raise TypeError("a request's model must be a name")
    if contexts is not None and (
        not isinstance(contexts, list) or len(contexts) != len(request.prompts)
    ):
        raise ValueError("a request's contexts must be a list, one per prompt")
    return ident, request


_CELL_FIELDS: dict[str, Any] = {
    "stdout": str,
    "stderr": str,
    "error": (str, type(None)),
    "duration_s": (int, float),
    "final": (str, type(None)),
    "timed_out": bool,
    "lost_state": bool,
    "notes": list,
    "raw_chars": int,
}


def _cell_result(raw: Any) -> CellResult:
    """A ``result`` frame's cell, checked field by field (the engine trusts its types)."""
    if not isinstance(raw, dict) or not set(raw) <= set(_CELL_FIELDS):
        raise TypeError("a result frame needs a cell object with known fields only")
    for key, value in raw.items():
        if not isinstance(value, _CELL_FIELDS[key]):
            raise TypeError(f"a cell's {key!r} has the wrong type")
    if not all(isinstance(note, str) for note in raw.get("notes", ())):
        raise TypeError("a cell's notes must be strings")
    return CellResult.from_dict(raw)


class WorkerSession:
    """The host's end of one worker: start, run cells, serve sub-calls, kill, restart."""

    def __init__(self, env: SubprocessEnvironment, spec: SessionSpec) -> None:
        self._env = env
        self._spec = spec
        self._tokens = itertools.count()
        self._proc: WorkerProcess | None = None
        self._events: queue.Queue[_Event] = queue.Queue()
        self._stderr: IO[bytes] | None = None
        self._launched: Launched | None = None
        self._meta: ContextMeta | None = None
        #: the confinement measures of the current worker (re-read at every restart)
        self.measures: list[Measure] = []
        self._signal_pid: int | None = None
        #: the cancel scope of the cell running (or last run): its sub-calls are served under it
        self._cell = Cancel()
        self._start()

    @property
    def meta(self) -> ContextMeta:
        assert self._meta is not None
        return self._meta

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    # -- lifecycle ------------------------------------------------------------------------------
    def _start(self) -> None:
        launched = self._env.take(self._spec)
        self._launched = launched
        self._proc = launched.proc
        self._channel = launched.channel
        self._stderr = launched.stderr
        self._events = queue.Queue()
        threading.Thread(
            target=self._read_loop, args=(self._channel, self._events), daemon=True
        ).start()
        path, kind = self._spec.context.file()
        self._channel.send(
            {
                "op": "init",
                "context_path": self._env.context_path(path),
                "context_kind": kind,
                "source": self._spec.context.source,
                "rlimits": self._env.limits.as_rlimits(),
                "sandbox": self._env.sandbox_config(),
            }
        )
        frame = self._next_frame(time.monotonic() + self._env.start_timeout_s)
        if frame is None or frame["op"] != "ready":
            detail = frame.get("error") if frame else self._crash_detail()
            self._kill()
            raise SandboxError(f"the worker did not start: {detail}")
        self._meta = ContextMeta.from_dict(frame["meta"])
        self.measures = [Measure.from_dict(m) for m in frame.get("measures", [])]
        self.measures += self._env.host_measures(launched)
        self._signal_pid = self._env.interrupt_pid(launched)

    @staticmethod
    def _read_loop(channel: Any, events: queue.Queue[_Event]) -> None:
        try:
            while (frame := channel.recv()) is not None:
                events.put(("frame", frame, None))
        except (ProtocolError, OSError) as exc:
            events.put(("broken", str(exc), None))
            return
        except Exception as exc:  # whatever a hostile frame provokes, the host must hear of it
            events.put(("broken", f"{type(exc).__name__}: {exc}", None))
            return
        events.put(("eof", None, None))

    def _next_frame(self, deadline: float) -> dict[str, Any] | None:
        while True:
            try:
                kind, payload, _ = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if kind == "frame":
                return dict(payload)
            if kind in ("eof", "broken"):
                return None

    def _crash_detail(self) -> str:
        code = self._proc.poll() if self._proc else None
        if code is None and self._proc is not None:
            try:  # the channel closed first; the exit status follows within moments
                code = self._proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        tail = ""
        if self._stderr is not None:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 2000))
            tail = self._stderr.read().decode("utf-8", "replace").strip()
        what = f"exit status {code}" if code is None or code >= 0 else f"killed by signal {-code}"
        return what + (f"; stderr: {tail}" if tail else "")

    def _kill(self) -> None:
        if self._launched is not None:
            self._launched.discard()
        self._launched = None
        self._proc = None

    def _restart(self) -> None:
        self._kill()
        self._start()

    def close(self) -> None:
        # No graceful shutdown: the worker holds nothing worth saving, and waiting for an
        # interpreter to finalize would cost more than the whole of a short completion.
        self._cell.set("the REPL was closed")
        self._kill()

    # -- cells ----------------------------------------------------------------------------------
    def run(self, code: str, *, deadline: float | None, output_limit: int) -> CellResult:
        if self._proc is None:
            self._start()
        # under the caller's scope: a child RLM stopped by its parent stops its cells too
        cell = self._cell = Cancel(current())
        self._channel.send({"op": "exec", "code": code, "output_limit": output_limit})
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
                kind, payload, extra = self._events.get(
                    timeout=POLL_S if left is None else min(POLL_S, left)
                )
            except queue.Empty:
                continue
            try:
                if kind == "frame" and payload["op"] == "result":
                    return _cell_result(payload["cell"])
                if kind == "frame" and payload["op"] == "subcall":
                    ident, request = _subcall(payload)
                    token = next(self._tokens)
                    pending[token] = (ident, len(request.prompts))
                    self._serve(token, request, cell)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                kind, payload = "broken", f"a bad {str(payload.get('op'))[:40]!r} frame: {exc}"
            if kind == "subcall_done" and payload in pending:
                self._channel.send(
                    {
                        "op": "subcall_result",
                        "id": pending.pop(payload)[0],
                        "response": extra.to_dict(),
                    }
                )
            elif kind in ("eof", "broken"):
                # the worker is gone: nobody will read the answers of its sub-calls
                cell.set("the REPL was lost")
                why = (
                    f"the REPL broke the channel protocol ({payload})"
                    if kind == "broken"
                    else f"the REPL process died ({self._crash_detail()})"
                )
                result = self._lost(why, output_limit)
                result.duration_s = time.monotonic() - t0
                return result

    def _serve(self, token: int, request: SubcallRequest, cell: Cancel) -> None:
        def work() -> None:
            try:
                with scope(cell):
                    response = self._spec.handler(request)
            except Exception as exc:
                response = SubcallResponse.failure(
                    len(request.prompts), str(exc), type(exc).__name__, raised=True
                )
            self._events.put(("subcall_done", token, response))

        threading.Thread(target=work, daemon=True).start()

    def _interrupt(self, pending: dict[int, tuple[int, int]], output_limit: int) -> CellResult:
        """The deadline passed: cancel its sub-calls, SIGINT, then kill if it does not yield."""
        self._cell.set(self._cell.reason or "the cell ran out of time")
        for ident, n in pending.values():
            self._refuse(ident, n)
        pending.clear()
        if self._launched is not None:
            self._env.interrupt(self._launched, self._signal_pid or self.pid)
        until = time.monotonic() + self._env.grace_s
        while (left := until - time.monotonic()) > 0:
            try:
                kind, payload, _ = self._events.get(timeout=left)
            except queue.Empty:
                break
            try:
                if kind == "frame" and payload["op"] == "result":
                    cell = _cell_result(payload["cell"])
                    cell.timed_out = True
                    return cell
                if kind == "frame" and payload["op"] == "subcall":
                    ident, request = _subcall(payload)
                    self._refuse(ident, len(request.prompts))
            except (KeyError, TypeError, ValueError, AttributeError):
                break  # a bad frame: the worker is killed below
            if kind in ("eof", "broken"):
                break
        cell = self._lost(
            "the cell ran past its time limit and did not stop when interrupted; "
            "the REPL was killed",
            output_limit,
        )
        cell.timed_out = True
        return cell

    def _refuse(self, ident: int, n: int) -> None:
        """Answer a sub-call of a stopped cell without making it (one error per prompt)."""
        refused = SubcallResponse.failure(
            max(1, n), "cancelled: the cell ran out of time", "CellTimeout"
        )
        self._channel.send({"op": "subcall_result", "id": ident, "response": refused.to_dict()})

    def _lost(self, why: str, output_limit: int) -> CellResult:
        self._restart()
        return CellResult(
            error=f"{why}. A new REPL was started: `context` is there again, but every variable, "
            "import and function defined before is gone.",
            lost_state=True,
        )

    def get_var(self, name: str, *, deadline: float | None) -> str | None:
        self._channel.send({"op": "get_var", "name": name})
        frame = self._next_frame(time.monotonic() + 30 if deadline is None else deadline)
        if frame is None or frame["op"] != "var":
            raise WorkerCrashed(f"the worker did not answer get_var ({self._crash_detail()})")
        value = frame["value"]
        return None if value is None else str(value)
