"""An environment built from parts: a :class:`~recursor.sandbox.launch.Launcher`, the worker's
limits, an optional spare worker, and :class:`~recursor.sandbox.session.WorkerSession`.

Every isolating environment (subprocess, forkserver, bwrap, gvisor, docker, e2b, modal,
daytona) is a :class:`WorkerEnvironment` around its own launcher; the named classes only
build that launcher from their arguments. Nothing here knows how a worker is started.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypedDict, Unpack

from recursor.errors import SandboxError
from recursor.sandbox import wire
from recursor.sandbox.base import SessionSpec
from recursor.sandbox.hardening import Measure
from recursor.sandbox.launch import (
    Launched,
    Launcher,
    context_bytes,
    launch,
    pause,
    worker_env,
)
from recursor.sandbox.limits import WorkerLimits
from recursor.sandbox.session import WorkerSession
from recursor.sandbox.stderr_tail import KEEP_BYTES


class SpareWorker:
    """One worker started ahead, generic until its ``init`` frame names a context, so a
    completion does not wait for Python to start and import the worker."""

    def __init__(self, start: Callable[[], Launched]) -> None:
        self._start = start
        self._spare: Launched | None = None
        self._lock = threading.Lock()
        #: the thread starting the next spare, joined by close; after close none is started
        self._refilling: threading.Thread | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, SpareWorker._drop, [None])

    def take(self) -> Launched:
        """The spare if it is still alive, else a new worker; then start the next spare."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.proc.poll() is not None:
            spare.discard()
            spare = None
        launched = spare or self._start()
        with self._lock:
            if not self._closed:
                self._refilling = threading.Thread(target=self._refill, daemon=True)
                self._refilling.start()
        return launched

    def _refill(self) -> None:
        try:
            fresh = self._start()
        except SandboxError:
            return
        with self._lock:
            if self._closed:  # closed while this one started: nobody will take it
                old: Launched | None = fresh
            else:
                old, self._spare = self._spare, fresh
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, SpareWorker._drop, [fresh])
        if old is not None:
            old.discard()

    @staticmethod
    def _drop(box: list[Launched | None]) -> None:
        for launched in box:
            if launched is not None:
                launched.discard()

    def close(self) -> None:
        """Stop the spare and start no other (it also exits by itself when this process
        ends); a spare being started now is stopped before close returns."""
        with self._lock:
            self._closed = True
            refilling = self._refilling
        if refilling is not None:
            refilling.join()
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()


class WorkerOptions(TypedDict, total=False):
    """The keywords every worker environment takes (:class:`WorkerEnvironment` says what they
    do); a subclass adds its own before them."""

    limits: WorkerLimits | None
    #: default 1.0
    grace_s: float
    #: how long a worker may take to start (default 60.0)
    start_timeout_s: float
    #: default False here; an environment whose workers can start generic says otherwise
    prestart: bool
    #: default True
    hardened: bool


class WorkerEnvironment:
    """Each session is one worker, started by ``launcher``.

    ``start_timeout_s``: how long a worker may take to start.
    ``grace_s``: how long an interrupted cell may take to stop before its worker is killed.
    ``prestart``: keep one spare worker started ahead (only where the launcher allows it).
    ``hardened``: the worker confines itself once its context is loaded (hardening.py) and the
    host puts it in cgroups where they are writable; every session reports the measures in
    force (:attr:`WorkerSession.measures`; ``recursor doctor`` prints them).
    """

    name = "worker"

    def __init__(self, launcher: Launcher, **options: Unpack[WorkerOptions]) -> None:
        unknown = sorted(set(options) - set(WorkerOptions.__annotations__))
        if unknown:  # what Python says of a keyword the signature lacks
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s): {', '.join(unknown)}"
            )
        limits = options.get("limits")
        grace_s = options.get("grace_s", 1.0)
        start_timeout_s = options.get("start_timeout_s", 60.0)
        prestart = options.get("prestart", False)
        hardened = options.get("hardened", True)
        self.launcher = launcher
        self.limits = limits or WorkerLimits()
        self.grace_s = grace_s
        self.start_timeout_s = start_timeout_s
        self.hardened = hardened
        self.prestart = prestart and launcher.traits.prestart
        # a partial, not a method of self: the spare must not keep the environment alive
        start = functools.partial(launch, launcher, None, self.limits, use_cgroups=hardened)
        self._spare = SpareWorker(start) if self.prestart else None
        self._closed = False

    # -- what Environment asks ------------------------------------------------------------------
    def open(self, spec: SessionSpec) -> WorkerSession:
        return WorkerSession(self, spec)

    def close(self) -> None:
        """Stop the spare worker and release the launcher's state (idempotent)."""
        if self._spare is not None:
            self._spare.close()
        if not self._closed:
            self._closed = True
            self.launcher.close()

    # -- what WorkerSession asks (WorkerSource) --------------------------------------------------
    def launch(self, spec: SessionSpec | None = None) -> Launched:
        return launch(self.launcher, spec, self.limits, use_cgroups=self.hardened)

    def take(self, spec: SessionSpec) -> Launched:
        if self._spare is not None:
            return self._spare.take()
        return self.launch(spec)

    def init_frame(self, spec: SessionSpec, launched: Launched) -> wire.Init:
        path, kind = spec.context.file()
        size = context_bytes(spec)
        memory = self.limits.memory_bytes(size)
        if launched.cgroup is not None and memory is not None:
            launched.cgroup.limit_memory(memory)  # a spare's cgroup was set before its context
        mount = self.launcher.traits.context_mount
        return wire.Init(
            context_path=mount or path,
            context_kind=kind,
            rlimits=self.limits.as_rlimits(size),
            sandbox=self.sandbox_config(),
            source=spec.context.source,
            tools=None if spec.tools is None else list(spec.tools.names),
        )

    def sandbox_config(self) -> dict[str, Any] | None:
        """The init frame's ``sandbox`` section: what the worker does to itself (None: nothing)."""
        if not self.hardened:
            return None
        return {**self.launcher.traits.confinement, "scratch_mb": self.limits.scratch_mb}

    def on_ready(self, launched: Launched) -> list[Measure]:
        out = self.launcher.on_ready(launched)
        if self.launcher.traits.host_process:
            out += self.process_measures(launched)
        return out

    def process_measures(self, launched: Launched) -> list[Measure]:
        """What the host enforces around a worker that is one of its processes."""
        keep = ", ".join(k for k in worker_env() if k != "PYTHONDONTWRITEBYTECODE")
        out = [
            Measure("scrubbed environment", True, f"only {keep} passed"),
            Measure(
                "process-group kill", True, f"SIGINT at the deadline, SIGKILL {self.grace_s}s later"
            ),
        ]
        if launched.cgroup is not None:
            out.append(Measure("cgroups", launched.cgroup.in_force, launched.cgroup.detail))
        out.append(
            Measure(
                "stderr pipe cap",
                True,
                f"a pipe, not a file; the host keeps its last {KEEP_BYTES >> 10} KiB",
            )
        )
        paused = self.hardened and self.launcher.traits.pausable
        out.append(
            Measure(
                "CPU between cells",
                paused,
                "process group SIGSTOPped between cells, SIGCONT at the next exec/get_var"
                if paused
                else "not stopped between cells",
            )
        )
        return out

    def interrupt(self, launched: Launched) -> None:
        self.launcher.interrupt(launched)

    def between_cells(self, launched: Launched, *, idle: bool) -> None:
        """A cell ended (``idle``) or the next exec/get_var comes: where the launcher allows
        it, the worker is stopped in between, so a thread model code left running burns no
        CPU while the root model thinks (SIGSTOP/SIGCONT of its process group)."""
        if self.hardened and self.launcher.traits.pausable:
            pause(launched, stopped=idle)
