"""The default environment: the worker program in a child process of its own.

The worker is started with ``sys.executable -I`` in a new session (so its whole process group
can be killed), talks frames over two pipes, memory-maps the context file, and runs under
rlimits (address space, CPU, file size) and a scrubbed environment (no API keys). With
``hardened=True`` (the default) it also confines itself once its context is loaded (see
hardening.py: namespaces, an unprivileged uid, Landlock, seccomp, a scratch quota) and the host
puts it in memory/pids cgroups where they are writable.

The parts live where their idea does: the frames in wire.py, the host's end of a worker in
session.py, launching in launch.py, the environment that composes them in environment.py,
the limits in limits.py. The names other code imports from here stay importable from here.
"""

from __future__ import annotations

import os
import sys
from typing import Unpack

from recursor.sandbox.environment import WorkerEnvironment, WorkerOptions
from recursor.sandbox.hardening import Measure
from recursor.sandbox.launch import (
    WORKER_PATH,
    ExitLatch,
    Launched,
    Spawned,
    SpawnRequest,
    Traits,
    WorkerProcess,
    on_lasting_thread,
    popen_worker,
    sigint,
    worker_argv,
)
from recursor.sandbox.limits import WorkerLimits
from recursor.sandbox.session import WorkerSession

__all__ = [
    "WORKER_PATH",
    "ExitLatch",
    "Launched",
    "ProcessLauncher",
    "SubprocessEnvironment",
    "WorkerLimits",
    "WorkerProcess",
    "WorkerSession",
]


class ProcessLauncher:
    """``python -I worker.py READ_FD WRITE_FD`` as a child process in a new session."""

    traits = Traits(prestart=True, pausable=True)

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def spawn(self, request: SpawnRequest) -> Spawned:
        argv = worker_argv(self.python, request.read_fd, request.write_fd, os.getpid())
        # the worker's parent-death signal fires when the thread that forked it ends (a spare
        # is started on a short-lived thread): fork on one that lasts
        return Spawned(on_lasting_thread(popen_worker, argv, request))

    def on_ready(self, launched: Launched) -> list[Measure]:
        return []

    def interrupt(self, launched: Launched) -> None:
        sigint(launched)

    def close(self) -> None:
        pass


class SubprocessEnvironment(WorkerEnvironment):
    """Each session is one worker process (see the module docstring).

    ``prestart``: keep one spare worker started ahead (it is generic until its ``init`` frame
    names a context), so a completion does not wait for Python to start and import the worker.
    """

    name = "subprocess"

    def __init__(self, *, python: str = sys.executable, **options: Unpack[WorkerOptions]) -> None:
        options.setdefault("prestart", True)
        super().__init__(ProcessLauncher(python), **options)
        self.python = python
