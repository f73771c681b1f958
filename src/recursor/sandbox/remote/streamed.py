"""The host side of the SDK-driven remote environments (e2b.py, modal.py, daytona.py).

Each session gets a sandbox of its own from the vendor: created with its network off, given
the recursor package and the context as uploaded files, then running the relay (relay.py),
which runs the unchanged worker. The worker's channel is the relay's stdin/stdout as the
vendor's SDK streams it, over the SDK's own authenticated connection: nothing listens on a
port, in the sandbox or here. On this side a :class:`RemoteProcess` stands where a local
worker's ``Popen`` would: two pump threads turn the session's pipes into relay lines and back,
so :class:`~recursor.sandbox.session.WorkerSession` runs unchanged (sub-calls, deadlines,
restarts). A cell out of time gets ``I`` (the relay sends SIGINT); a kill sends ``K`` and stops
the process through the SDK; the end of a session destroys the sandbox.

A vendor module supplies only a :class:`Vendor` (how to create a sandbox with its limits, and
what it enforces) and a :class:`Box` (how to upload, start, write, stop and destroy with that
SDK); :class:`StreamedLauncher` does the rest. The SDK is imported when an environment is
constructed, never before.
"""

from __future__ import annotations

import importlib
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from recursor.errors import SandboxError
from recursor.sandbox.environment import WorkerEnvironment
from recursor.sandbox.hardening import Measure
from recursor.sandbox.launch import ExitLatch, Launched, Spawned, SpawnRequest, Traits
from recursor.sandbox.remote import INSIDE_BOUNDARY
from recursor.sandbox.remote.relay import CHUNK, decode_line, encode_line

#: the recursor package itself (uploaded alone: never the whole site-packages around it)
PACKAGE = Path(__file__).resolve().parents[2]
#: PID_MAX_LIMIT on Linux: no local process has a pid this high, so a stray local kill of a
#: RemoteProcess's "pid" finds nothing (the sandbox's processes are not ours to signal)
_pids = itertools.count(1 << 22)
_T = TypeVar("_T")


def import_sdk(module: str, extra: str) -> Any:
    """The vendor's SDK, or a SandboxError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SandboxError(
            f'the {extra} environment needs the {module!r} package: pip install "recursor[{extra}]"'
        ) from exc


def package_files(remote_dir: str) -> list[tuple[str, str]]:
    """(local path, remote path) of every file of the package, bytecode left out."""
    out = []
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            rel = path.relative_to(PACKAGE).as_posix()
            out.append((str(path), f"{remote_dir}/recursor/{rel}"))
    return out


class Sink(Protocol):
    """Where a Box delivers what the started process writes, chunk by chunk."""

    def on_stdout(self, chunk: str | bytes) -> None: ...

    def on_stderr(self, chunk: str | bytes) -> None: ...

    def on_exit(self, status: int | None) -> None: ...


class Box(Protocol):
    """One remote sandbox, driven through a vendor SDK (one class per vendor module)."""

    #: the vendor's id of the sandbox, for messages and measures
    ident: str

    def upload(self, files: list[tuple[str, str]]) -> None:
        """Copy local files (local path, remote path) into the sandbox, as files."""
        ...

    def start(self, argv: list[str], sink: Sink) -> None:
        """Start ``argv`` with a writable stdin; stream its output to ``sink`` from a thread."""
        ...

    def send(self, text: str) -> None:
        """Write ASCII lines to the started process's stdin."""
        ...

    def stop(self) -> None:
        """Kill the started process (the sandbox may stay until destroy)."""
        ...

    def destroy(self) -> None: ...


class RemoteProcess:
    """A relay in a remote sandbox, as a WorkerSession sees a worker process."""

    def __init__(
        self, box: Box, read_fd: int, write_fd: int, stderr: IO[bytes], memory_mb: int | None
    ) -> None:
        self.box = box
        #: the memory the sandbox was created with (None: the vendor's default)
        self.memory_mb = memory_mb
        self.pid = next(_pids)
        # the session's ends of the pipes are closed once the launch returns: keep our own
        self._in_fd = os.dup(read_fd)
        self._out_fd: int | None = os.dup(write_fd)
        self._stderr = stderr
        self._pending = b""
        self._exit = ExitLatch(f"sandbox {box.ident}")
        self._lock = threading.Lock()  # the exit, and the out fd it closes
        self._send_lock = threading.Lock()  # one line at a time on the vendor's stdin

    def start(self, argv: list[str]) -> None:
        try:
            self.box.start(argv, self)
        except BaseException:
            os.close(self._in_fd)
            self.on_exit(None)
            raise
        threading.Thread(target=self._pump_in, daemon=True, name="recursor-remote-in").start()

    # -- host -> relay --------------------------------------------------------------------------
    def _send(self, line: bytes) -> None:
        with self._send_lock:
            self.box.send(line.decode("ascii"))

    def _pump_in(self) -> None:
        try:
            while chunk := os.read(self._in_fd, CHUNK):
                self._send(encode_line(b"D:", chunk))
        except Exception as exc:  # the SDK failed: say so, and end the session's stream
            self.on_stderr(f"\nrecursor: sending to sandbox {self.box.ident} failed: {exc}\n")
            self.on_exit(None)
        finally:
            os.close(self._in_fd)

    def interrupt(self) -> None:
        try:
            self._send(b"I\n")
        except Exception as exc:  # the session kills the sandbox grace_s later anyway
            self.on_stderr(f"\nrecursor: interrupt failed: {exc}\n")

    def kill(self) -> None:
        """Stop the relay and its worker; the process counts as gone whatever the SDK says."""
        # both, each on its own: a relay past hearing its "K" is stopped by the SDK's call
        steps: list[Callable[[], None]] = [lambda: self._send(b"K\n"), self.box.stop]
        for step in steps:
            try:
                step()
            except Exception as exc:  # the sandbox is destroyed next, which raises if it fails
                self.on_stderr(f"\nrecursor: stopping sandbox {self.box.ident}: {exc}\n")
        self.on_exit(-9)

    def destroy(self) -> None:
        try:
            self.box.destroy()
        except Exception as exc:
            # said loudly: the sandbox may live on (and be billed) until the lifetime set at
            # its creation ends it
            raise SandboxError(f"could not destroy sandbox {self.box.ident}: {exc}") from exc

    # -- relay -> host (the Sink) ---------------------------------------------------------------
    def on_stdout(self, chunk: str | bytes) -> None:
        data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            tag, payload = decode_line(line)
            if tag == "F":
                self._write_out(payload)
            elif tag == "X":
                self.on_exit(int(payload))

    def _write_out(self, data: bytes) -> None:
        view = memoryview(data)
        with self._lock:
            try:
                while view and self._out_fd is not None:
                    view = view[os.write(self._out_fd, view) :]
            except OSError:  # the session stopped reading: it is closing
                pass

    def on_stderr(self, chunk: str | bytes) -> None:
        data = chunk.encode("utf-8", "replace") if isinstance(chunk, str) else bytes(chunk)
        with self._lock:
            try:
                self._stderr.write(data)
                self._stderr.flush()
            except ValueError:  # closed: the session is over
                pass

    def on_exit(self, status: int | None) -> None:
        with self._lock:
            if self._out_fd is not None:
                os.close(self._out_fd)  # the session reads end of stream
                self._out_fd = None
            if self._exit.returncode is not None:
                return  # the first status reported stands
            self._exit.exited(-1 if status is None else status)

    # -- WorkerProcess --------------------------------------------------------------------------
    def poll(self) -> int | None:
        return self._exit.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._exit.wait(timeout)


class Vendor(Protocol):
    """How one vendor's SDK makes a sandbox (one class per vendor module)."""

    #: the environment's name, for messages
    name: str

    def open_box(self, request: SpawnRequest, remote_dir: str, memory_mb: int | None) -> Box:
        """Create a sandbox, its network off and its limits set, with the package uploaded
        under ``remote_dir``; ``memory_mb``: its memory (None: the vendor's default)."""
        ...

    def measures(self, box: Box, memory_mb: int | None) -> list[Measure]:
        """What the vendor enforces around the sandbox (its network, its limits)."""
        ...


class StreamedLauncher:
    """A vendor sandbox per worker, the relay in it, the channel streamed through the SDK."""

    def __init__(self, vendor: Vendor, remote_dir: str, python_in_sandbox: str = "python3") -> None:
        self.vendor = vendor
        self.remote_dir = remote_dir.rstrip("/")
        self.python_in_sandbox = python_in_sandbox
        # no spare: a sandbox cannot be started before its session names the context; the
        # vendor's machine holds the process, with the vendor's limits (no cgroups, no local
        # kill)
        self.traits = Traits(
            cgroups=False,
            host_process=False,
            context_mount=self.remote_context,
            confinement=INSIDE_BOUNDARY,
        )

    @property
    def remote_context(self) -> str:
        return f"{self.remote_dir}/context"

    def spawn(self, request: SpawnRequest) -> Spawned:
        # launch() around this closes the pipes on an OSError and raises a SandboxError; the
        # local scratch directory stays unused: the worker's is remote.
        # the context's file first: no sandbox is created for a context that cannot be written
        spec = request.spec
        upload = [] if spec is None else [(spec.context.file()[0], self.remote_context)]
        nbytes = request.memory_bytes
        memory_mb = None if nbytes is None else -(-nbytes >> 20)
        name = self.vendor.name
        box = _guard(
            name,
            "create the sandbox",
            lambda: self.vendor.open_box(request, self.remote_dir, memory_mb),
        )
        try:
            if upload:
                _guard(name, "upload the context", lambda: box.upload(upload))
            proc = RemoteProcess(box, request.read_fd, request.write_fd, request.stderr, memory_mb)
            relay = f"{self.remote_dir}/recursor/sandbox/remote/relay.py"
            argv = [self.python_in_sandbox, "-I", "-B", relay]
            _guard(name, "start the relay", lambda: proc.start(argv))
        except BaseException:
            try:
                box.destroy()
            except Exception:
                pass  # the first error is the one worth raising
            raise
        return Spawned(proc, stop=proc.kill, cleanup=proc.destroy)

    def on_ready(self, launched: Launched) -> list[Measure]:
        proc = _remote(launched)
        return [
            *self.vendor.measures(proc.box, proc.memory_mb),
            Measure(
                "remote channel",
                True,
                "frames as base64 lines on the relay's stdin/stdout, streamed by the SDK; "
                "no port opened; no host variable sent",
            ),
            Measure(
                "interrupt",
                True,
                "SIGINT through the relay at the deadline; sandbox destroyed if the cell does "
                "not stop within the grace period",
            ),
        ]

    def interrupt(self, launched: Launched) -> None:
        _remote(launched).interrupt()

    def close(self) -> None:
        pass


def _remote(launched: Launched) -> RemoteProcess:
    proc = launched.proc
    assert isinstance(proc, RemoteProcess)  # this launcher's workers are all remote
    return proc


class StreamedEnvironment(WorkerEnvironment):
    """A sandbox per session from a vendor SDK (the vendor modules build it with theirs).

    ``remote_dir``: where in the sandbox the package and the context are uploaded.
    ``python_in_sandbox``: the sandbox image's Python (>= 3.11; only the standard library).
    """

    name = "remote"
    #: the default remote_dir (a directory the sandbox's user may create)
    remote_dir_default = "/opt/recursor"

    def __init__(
        self,
        vendor: Vendor,
        *,
        remote_dir: str | None = None,
        python_in_sandbox: str = "python3",
        **kw: Any,
    ) -> None:
        kw.pop("prestart", None)
        kw.setdefault("start_timeout_s", 180.0)
        self.launcher: StreamedLauncher
        launcher = StreamedLauncher(
            vendor, remote_dir or self.remote_dir_default, python_in_sandbox
        )
        super().__init__(launcher, **kw)
        self.remote_dir = launcher.remote_dir


class RemoteStartError(OSError):
    """A vendor step of starting a sandbox failed. An OSError, as a local worker that cannot be
    started raises: :func:`recursor.sandbox.launch.launch` then closes the session's pipes and
    raises the SandboxError callers see."""


def _guard(vendor: str, what: str, step: Callable[[], _T]) -> _T:
    """Run one SDK step; whatever it raises becomes a RemoteStartError naming the step."""
    try:
        return step()
    except Exception as exc:
        raise RemoteStartError(f"{vendor}: could not {what}: {type(exc).__name__}: {exc}") from exc
