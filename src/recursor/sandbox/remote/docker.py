"""The worker in a Docker container, driven through the ``docker`` CLI (local or remote daemon).

Per session: ``docker create`` with ``--network none``, memory/CPU/pids limits, a size-capped
tmpfs ``/tmp`` (the scratch directory), only the capabilities needed to drop to uid 65534 (the
worker drops them with the uid) and no-new-privileges; the root file system stays writable
because ``docker cp`` cannot upload into a read-only one (uid 65534 and Landlock keep the
worker out of it); then two uploads with ``docker cp`` (the recursor package, and the context
as a file at ``/run/recursor/context``, never as a code literal); then ``docker start -ai``,
whose stdin/stdout are the frame channel. Sub-calls travel on that channel, inside the
Docker CLI's own connection to its daemon: nothing listens on a port. The image needs only a
Python >= 3.11 (the worker uses the standard library alone): nothing is installed at start.

A cell out of time gets ``docker kill --signal INT``; a session's end, ``docker rm -f``.
Tested against a fake ``docker`` CLI (tests/sandbox/fake_docker.py), never a real daemon.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from recursor.errors import SandboxError
from recursor.sandbox.environment import WorkerEnvironment
from recursor.sandbox.hardening import Measure
from recursor.sandbox.launch import (
    Launched,
    Spawned,
    SpawnRequest,
    Traits,
    on_lasting_thread,
    popen_worker,
)
from recursor.sandbox.remote import INSIDE_BOUNDARY

CONTEXT_PATH = "/run/recursor/context"
PACKAGE_DIR = "/opt/recursor"
WORKER = f"{PACKAGE_DIR}/recursor/sandbox/worker.py"
#: the recursor package itself (uploaded alone: never the whole site-packages around it)
_PACKAGE = str(Path(__file__).resolve().parents[2])
_ids = itertools.count()


class DockerLauncher:
    """``docker create`` with the limits, ``docker cp`` of the package and the context, then
    ``docker start -ai``, whose stdin/stdout are the frame channel."""

    # the daemon's cgroups hold the container, with the limits set at create
    traits = Traits(cgroups=False, context_mount=CONTEXT_PATH, confinement=INSIDE_BOUNDARY)

    def __init__(self, docker: str, image: str, python_in_image: str, cpus: float) -> None:
        self.docker = docker
        self.image = image
        self.python_in_image = python_in_image
        self.cpus = cpus
        self._lock = threading.Lock()
        self._names: dict[int, str] = {}  # worker pid -> container name
        self._detail: dict[int, str] = {}  # worker pid -> its limits, for the measure

    def _cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [self.docker, *args], stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        if check and done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip()[-500:]
            raise SandboxError(f"docker {args[0]} failed: {tail}")
        return done

    def spawn(self, request: SpawnRequest) -> Spawned:
        # `docker start -ai` attaches for as long as the session lives: start it from a thread
        # that lives as long
        return on_lasting_thread(self._create_and_start, request)

    def _create_and_start(self, request: SpawnRequest) -> Spawned:
        name = f"recursor-{os.getpid()}-{next(_ids)}"
        limits = request.limits
        create = [
            "create",
            "-i",
            "--name",
            name,
            "--network",
            "none",
            # root in the container only until the context is loaded: the upload is a root
            # file of mode 600; the worker then becomes uid 65534 and loses these capabilities
            "--cap-drop",
            "ALL",
            "--cap-add",
            "SETUID",
            "--cap-add",
            "SETGID",
            "--cap-add",
            "CHOWN",
            "--security-opt",
            "no-new-privileges",
            "--pids-limit",
            str(limits.processes or 128),
            "--cpus",
            str(self.cpus),
            "--tmpfs",
            f"/tmp:rw,nosuid,nodev,size={limits.scratch_mb or 256}m,mode=1777",
            "--workdir",
            "/tmp",
        ]
        memory_mb = None if request.memory_bytes is None else -(-request.memory_bytes >> 20)
        if memory_mb:
            create += ["--memory", f"{memory_mb}m"]
        for key, value in request.env.items():
            create += ["--env", f"{key}={value}"]
        create += [self.image, self.python_in_image, "-I", WORKER, "0", "1"]
        self._cli(*create, check=True)
        try:
            self._cli("cp", _PACKAGE + "/.", f"{name}:{PACKAGE_DIR}/recursor", check=True)
            if request.spec is not None:
                path, _kind = request.spec.context.file()
                self._cli("cp", path, f"{name}:{CONTEXT_PATH}", check=True)
            proc = popen_worker([self.docker, "start", "-ai", name], request, stdio=True)
        except BaseException:
            self._cli("rm", "-f", name)
            raise
        mem = f"{memory_mb} MB" if memory_mb else "no"
        with self._lock:
            self._names[proc.pid] = name
            self._detail[proc.pid] = (
                f"--network none; {mem} memory, {self.cpus} CPUs, {limits.processes} pids"
            )
        return Spawned(proc, stop=lambda: self._kill(name), cleanup=lambda: self._remove(proc.pid))

    def _kill(self, name: str) -> None:
        self._cli("kill", name)

    def _remove(self, pid: int) -> None:
        with self._lock:
            name = self._names.pop(pid, None)
            self._detail.pop(pid, None)
        if name is not None:
            self._cli("rm", "-f", name)

    def on_ready(self, launched: Launched) -> list[Measure]:
        with self._lock:
            detail = self._detail.get(launched.proc.pid, "")
        return [
            Measure(
                "docker",
                True,
                f"{detail}; capabilities only to drop to uid 65534; "
                f"context uploaded with docker cp; image {self.image}",
            )
        ]

    def interrupt(self, launched: Launched) -> None:
        with self._lock:
            name = self._names.get(launched.proc.pid)
        if name is not None:
            self._cli("kill", "--signal", "INT", name)

    def close(self) -> None:
        pass


class DockerEnvironment(WorkerEnvironment):
    name = "docker"

    def __init__(
        self,
        *,
        image: str = "python:3.11-slim",
        docker: str = "docker",
        python_in_image: str = "python3",
        cpus: float = 1.0,
        **kw: Any,
    ) -> None:
        kw.pop("prestart", None)  # the context is uploaded before start: no spare
        kw.setdefault("start_timeout_s", 120.0)
        found = shutil.which(docker)
        if found is None:
            raise SandboxError(f"the docker environment needs the {docker!r} CLI on PATH")
        self.docker = found
        self.image = image
        self.cpus = cpus
        super().__init__(DockerLauncher(found, image, python_in_image, cpus), **kw)
