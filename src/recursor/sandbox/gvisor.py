"""The worker under gVisor (``runsc``, Debian package ``runsc``), where it is installed.

gVisor puts a user-space kernel between model code and the host: the worker's system calls
are served by the Sentry, not by Linux. Each session is one OCI container run with
``runsc --network=none run``: a read-only root file system holding only ``/usr``, the
interpreter's prefix, the virtualenv and the package (read-only binds), the context file at
``/run/recursor/context`` (read-only), a size-capped tmpfs ``/tmp`` as the scratch directory,
its own pid/ipc/uts/mount namespaces, uid 65534, no capabilities. runsc passes only stdio into
the sandbox, so the frame channel is the worker's stdin/stdout (the worker moves it off fds
0/1 at once). Inside, the worker adds rlimits and seccomp (gVisor implements both; Landlock it
does not, and the worker reports that).

``--ignore-cgroups``: the memory ceiling is the worker's RLIMIT_AS, since cgroup v1 under
runsc needs a systemd-style setup this machine need not have.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
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
    worker_argv,
)
from recursor.sandbox.limits import WorkerLimits
from recursor.sandbox.mounts import CONTEXT_MOUNT, SANDBOX_UID, python_roots

_CAPS = ["CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"]
_ids = itertools.count()


def available() -> str | None:
    return shutil.which("runsc")


class GvisorLauncher:
    """``runsc run`` of a fresh OCI bundle per worker; the channel is its stdin/stdout."""

    # the context is mounted at launch (no spare); runsc's sandbox and gofer are not children
    # of the process we start (no cgroups: rlimits only)
    traits = Traits(
        cgroups=False,
        context_mount=CONTEXT_MOUNT,
        confinement={"namespaces": False, "drop_uid": True, "uid": SANDBOX_UID},
    )

    def __init__(
        self, runsc: str, python: str = sys.executable, scratch_mb: int | None = 256
    ) -> None:
        self.runsc = runsc
        self.python = python
        self.scratch_mb = scratch_mb
        # runsc's state and the bundles; removed with the launcher
        self._root = tempfile.mkdtemp(prefix="recursor-runsc-")
        self._finalize_root = weakref.finalize(self, shutil.rmtree, self._root, True)
        self._lock = threading.Lock()
        self._ids: dict[int, str] = {}  # worker pid -> container id

    def spawn(self, request: SpawnRequest) -> Spawned:
        cid = f"recursor-{os.getpid()}-{next(_ids)}"
        bundle = self.bundle(request, cid)
        argv = [
            self.runsc,
            "--root",
            self._root,
            "--network=none",
            "--ignore-cgroups",
            "run",
            "--bundle",
            bundle,
            cid,
        ]
        try:
            # runsc's sandbox dies with the thread that started it (PDEATHSIG), as bwrap's does
            proc = on_lasting_thread(popen_worker, argv, request, stdio=True)
        except BaseException:
            shutil.rmtree(bundle, ignore_errors=True)
            raise
        with self._lock:
            self._ids[proc.pid] = cid
        # killing the container first lets `runsc run` exit and remove it (~40 ms); killing
        # runsc first would leave `delete --force` waiting on the orphaned sandbox (~1.5 s)
        return Spawned(
            proc,
            stop=lambda: self._runsc("kill", "--all", cid, "KILL"),
            cleanup=lambda: self._delete(proc.pid, cid, bundle),
        )

    def _runsc(self, *args: str) -> None:
        subprocess.run(
            [self.runsc, "--root", self._root, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )

    def _delete(self, pid: int, cid: str, bundle: str) -> None:
        with self._lock:
            self._ids.pop(pid, None)
        self._runsc("delete", "--force", cid)  # a no-op when `runsc run` removed it already
        shutil.rmtree(bundle, ignore_errors=True)

    def bundle(self, request: SpawnRequest, cid: str) -> str:
        """Write an OCI bundle (config.json and an empty root) and return its directory."""
        path = Path(tempfile.mkdtemp(prefix=f"bundle-{cid}-", dir=self._root))
        rootfs = path / "rootfs"
        rootfs.mkdir()
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                (rootfs / link).symlink_to(os.readlink(f"/{link}"))
        ro = ["rbind", "ro", "nosuid", "nodev"]
        scratch_mb = request.limits.scratch_mb or 256
        mounts: list[dict[str, Any]] = [
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ro},
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", f"size={scratch_mb}m"],
            },
        ]
        mounts += [
            {"destination": p, "type": "bind", "source": p, "options": ro} for p in python_roots()
        ]
        if request.spec is not None:
            ctx_path, _kind = request.spec.context.file()
            mounts.append(
                {"destination": CONTEXT_MOUNT, "type": "bind", "source": ctx_path, "options": ro}
            )
        config = {
            "ociVersion": "1.0.0",
            "process": {
                "terminal": False,
                # root of the Sentry only, holding just what it takes to load the context (a
                # host file of mode 600) and then become SANDBOX_UID (the worker does that)
                "user": {"uid": 0, "gid": 0},
                "args": worker_argv(self.python, 0, 1),
                "env": [f"{k}={v}" for k, v in request.env.items()],
                "cwd": "/tmp",
                "capabilities": {k: _CAPS for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": True,
            },
            "root": {"path": "rootfs", "readonly": True},
            "mounts": mounts,
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
            },
        }
        (path / "config.json").write_text(json.dumps(config))
        return str(path)

    def on_ready(self, launched: Launched) -> list[Measure]:
        return [
            Measure(
                "gvisor",
                True,
                "runsc user-space kernel; no network; pid, ipc, uts, mount namespaces; "
                "read-only root with only /usr and Python; context read-only; "
                f"private /tmp of {self.scratch_mb} MB",
            )
        ]

    def interrupt(self, launched: Launched) -> None:
        # `runsc run` does not forward SIGINT: ask runsc to signal the container's process
        with self._lock:
            cid = self._ids.get(launched.proc.pid)
        if cid is not None:
            self._runsc("kill", cid, "SIGINT")

    def close(self) -> None:
        self._finalize_root()


class GvisorEnvironment(WorkerEnvironment):
    name = "gvisor"

    def __init__(
        self, *, runsc: str | None = None, python: str = sys.executable, **kw: Any
    ) -> None:
        found = runsc or available()
        if found is None:
            raise SandboxError(
                "the gvisor environment needs runsc: apt-get install runsc "
                "(make install tries it as root)"
            )
        self.runsc = found
        self.python = python
        kw.pop("prestart", None)
        limits = kw.pop("limits", None) or WorkerLimits()
        launcher = GvisorLauncher(found, python, limits.scratch_mb)
        super().__init__(launcher, limits=limits, **kw)


__all__ = ["GvisorEnvironment", "GvisorLauncher", "available"]
