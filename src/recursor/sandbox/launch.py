"""How a worker process comes to exist: the :class:`Launcher` seam, and what all launches share.

A launcher knows one way to start the worker program (a plain ``python -I``, a fork server,
bubblewrap, runsc, ``docker start``, a vendor's SDK) and what that way enforces around it.
Everything else is common and lives here or in :mod:`~recursor.sandbox.environment`: the two
pipes of the frame channel, the scratch directory, the stderr pipe, the cgroups, the
teardown (:func:`launch`, :class:`Launched`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from recursor.errors import SandboxError
from recursor.sandbox import cgroups
from recursor.sandbox.base import SessionSpec
from recursor.sandbox.framing import Channel
from recursor.sandbox.hardening import Measure
from recursor.sandbox.limits import WorkerLimits
from recursor.sandbox.stderr_tail import StderrTail

WORKER_PATH = Path(__file__).with_name("worker.py")
_MB = 1 << 20
#: variables passed to the worker; everything else (API keys above all) stays in the host
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
_T = TypeVar("_T")
#: guards Launched.discard's once-only flag (discards are rare; one lock for all is enough)
_DISCARD_LOCK = threading.Lock()

#: bwrap's --die-with-parent and runsc's sandbox are PR_SET_PDEATHSIG, which fires when the
#: *thread* that started them ends; ``docker start -ai`` stays attached as long. Such launches
#: run on these long-lived pool threads (they never exit), never on a short-lived caller's.
_LASTING = ThreadPoolExecutor(8, thread_name_prefix="recursor-launch")


def on_lasting_thread(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)`` run on a thread that lives as long as this process."""
    return _LASTING.submit(fn, *args, **kwargs).result()


def worker_env() -> dict[str, str]:
    """The worker's environment variables: the host's locale and PATH, nothing else."""
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def worker_argv(python: str, read_fd: int, write_fd: int, parent: int | None = None) -> list[str]:
    """The command line of the worker program itself; ``parent``: the pid it should see as its
    parent (it dies with it; None where a pid namespace hides the host)."""
    tail = [] if parent is None else [str(parent)]
    return [python, "-I", str(WORKER_PATH), str(read_fd), str(write_fd), *tail]


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


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """What a launcher gets to start one worker with."""

    #: the worker's ends of the channel (closed by :func:`launch` once spawn returns)
    read_fd: int
    write_fd: int
    #: the write end of the stderr pipe (:class:`~recursor.sandbox.stderr_tail.StderrTail`)
    stderr: IO[bytes]
    #: a fresh local scratch directory (the worker's cwd, where it is a local process)
    cwd: str
    #: None for a spare worker, started before its session is known
    spec: SessionSpec | None
    limits: WorkerLimits
    #: the worker's memory cap for this context, resolved (None: no cap)
    memory_bytes: int | None
    env: dict[str, str]


@dataclass(slots=True)
class Spawned:
    """A launcher's started worker process, with its own ways to stop and tear it down."""

    proc: WorkerProcess
    #: tried before the process-group kill (a container runtime's own kill)
    stop: Callable[[], None] | None = None
    #: run after the process is reaped (a container runtime's state, a vendor sandbox)
    cleanup: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class Traits:
    """What a launcher's workers are like, for the machinery around them."""

    #: a worker may be started before its session is known (and kept as a spare)
    prestart: bool = False
    #: the host may put the launched process in memory/pids cgroups (off where the launcher
    #: forks apart, or someone else's cgroups hold it)
    cgroups: bool = True
    #: the worker is a process of this host: the host scrubs its environment and kills its
    #: process group (off for a vendor's sandbox)
    host_process: bool = True
    #: where the worker finds the context file (None: at the host's path)
    context_mount: str | None = None
    #: the init frame's ``sandbox`` section (the worker adds the rest of hardening.py's
    #: defaults); ``scratch_mb`` is added from the limits
    confinement: dict[str, Any] = field(default_factory=dict)
    #: the worker's process group may be SIGSTOPped between cells (a local process tree the
    #: host may signal; not a container runtime's, which would stop the runtime itself)
    pausable: bool = False


class Launcher(Protocol):
    """One way to start the worker program. Environments are a launcher plus
    :class:`~recursor.sandbox.environment.WorkerEnvironment` (sessions, spares, limits)."""

    traits: Traits

    def spawn(self, request: SpawnRequest) -> Spawned:
        """Start the worker with the channel fds, in a new session; OSError if it cannot."""
        ...

    def on_ready(self, launched: Launched) -> list[Measure]:
        """The worker is up: finish what needs its process tree; what is enforced around it."""
        ...

    def interrupt(self, launched: Launched) -> None:
        """Tell the worker its cell is out of time (SIGINT, by whatever reaches it)."""
        ...

    def close(self) -> None:
        """Release what the launcher holds (a fork server, a runtime's state directory)."""
        ...


@dataclass(slots=True)
class Launched:
    """A started worker process that has not been given its context yet."""

    proc: WorkerProcess
    channel: Channel
    stderr: StderrTail
    scratch: tempfile.TemporaryDirectory[str]
    cgroup: cgroups.CgroupLimit | None = None
    stop: Callable[[], None] | None = None
    cleanup: Callable[[], None] | None = None
    #: the process that gets SIGINT when a cell is out of time (a launcher may name a child)
    signal_pid: int | None = None
    discarded: bool = False

    def discard(self) -> None:
        """Stop the worker and release what it held, once (a second call does nothing)."""
        with _DISCARD_LOCK:
            if self.discarded:
                return
            self.discarded = True
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


def launch(
    launcher: Launcher,
    spec: SessionSpec | None,
    limits: WorkerLimits,
    *,
    use_cgroups: bool,
) -> Launched:
    """Start a worker through ``launcher``: pipes, a scratch directory, stderr to a pipe."""
    to_worker_r, to_worker_w = os.pipe()
    from_worker_r, from_worker_w = os.pipe()
    stderr = StderrTail()
    scratch = tempfile.TemporaryDirectory(prefix="recursor-repl-")
    memory = limits.memory_bytes(context_bytes(spec))
    request = SpawnRequest(
        to_worker_r, from_worker_w, stderr.writer, scratch.name, spec, limits, memory, worker_env()
    )
    try:
        spawned = launcher.spawn(request)
    except OSError as exc:
        for fd in (to_worker_w, from_worker_r):
            os.close(fd)
        stderr.close()
        scratch.cleanup()
        raise SandboxError(f"could not start the worker: {exc}") from exc
    finally:
        os.close(to_worker_r)
        os.close(from_worker_w)
    if launcher.traits.host_process:
        stderr.release_writer()  # the worker holds its own copy; a remote launcher writes ours
    channel = Channel(from_worker_r, to_worker_w, max_frame=limits.frame_mb * _MB)
    launched = Launched(spawned.proc, channel, stderr, scratch, None, spawned.stop, spawned.cleanup)
    if use_cgroups and launcher.traits.cgroups and sys.platform == "linux":
        launched.cgroup = cgroups.attach(spawned.proc.pid, memory, limits.processes)
    return launched


def context_bytes(spec: SessionSpec | None) -> int:
    """The size of a session's context file (0 for a spare, whose context is not known yet)."""
    if spec is None:
        return 0
    try:
        return os.path.getsize(spec.context.file()[0])
    except OSError:
        return 0


def popen_worker(argv: list[str], request: SpawnRequest, *, stdio: bool = False) -> WorkerProcess:
    """``argv`` as a local process in a new session (so its whole group can be killed).

    ``stdio``: the channel is the process's stdin/stdout (a launcher that passes no other fds,
    runsc, ``docker start -ai``); else the fds are passed as they are.
    """
    return subprocess.Popen(
        argv,
        pass_fds=() if stdio else (request.read_fd, request.write_fd),
        stdin=request.read_fd if stdio else subprocess.DEVNULL,
        stdout=request.write_fd if stdio else subprocess.DEVNULL,
        stderr=request.stderr,
        cwd=request.cwd,
        env=request.env,
        start_new_session=True,
    )


def pause(launched: Launched, *, stopped: bool) -> None:
    """SIGSTOP (``stopped``) or SIGCONT the worker's process group, and the process its launcher
    named: between cells nothing of model code runs (a thread it left behind gets no CPU)."""
    sig = signal.SIGSTOP if stopped else signal.SIGCONT
    try:
        os.killpg(launched.proc.pid, sig)
        if launched.signal_pid not in (None, launched.proc.pid):
            os.kill(launched.signal_pid, sig)
    except ProcessLookupError:
        pass  # gone: the session finds out when it next talks to it


def sigint(launched: Launched) -> None:
    """SIGINT to the worker (or the process its launcher named), if it still runs."""
    try:
        os.kill(launched.signal_pid or launched.proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
