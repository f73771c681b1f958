"""The worker under bubblewrap (Debian package ``bubblewrap``; ``make install`` installs it).

Every namespace bwrap knows (user, pid, net, ipc, uts, mount, cgroup), a root file system that
holds only read-only ``/usr``, the interpreter's prefix, the virtualenv and the package, the
context file bind-mounted read-only at ``/run/recursor/context``, a private size-capped tmpfs
``/tmp`` as the scratch directory, a new ``/proc`` and a minimal ``/dev``; no capabilities;
``--die-with-parent``. Inside, the worker still applies rlimits, Landlock and seccomp to itself
(the namespaces and the uid are bwrap's).

Because the context is mounted at launch, every session starts its own worker (no spare).

Shortcut, said plainly: bwrap maps the sandbox uid to the uid that launched it. Launched by
root (as here), the worker is uid 65534 inside but host root outside, without capabilities;
what it could own is only what is mounted, and all of that is read-only, with Landlock on top.
Launched by an unprivileged user, the worker is that user outside.
"""

from __future__ import annotations

import os
import shutil
import sys
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
    sigint,
    worker_argv,
)
from recursor.sandbox.limits import WorkerLimits
from recursor.sandbox.mounts import CONTEXT_MOUNT, SANDBOX_UID, leaf, python_roots


def available() -> str | None:
    """The bwrap binary, when it is installed."""
    return shutil.which("bwrap")


class BwrapLauncher:
    """``bwrap ... python -I worker.py``: the namespaces and the uid are bwrap's; the worker
    adds Landlock and seccomp."""

    # the context is mounted at launch: no spare
    traits = Traits(
        context_mount=CONTEXT_MOUNT,
        confinement={"namespaces": False, "drop_uid": False},
        pausable=True,
    )

    def __init__(
        self, bwrap: str, python: str = sys.executable, scratch_mb: int | None = 256
    ) -> None:
        self.bwrap = bwrap
        self.python = python
        self.scratch_mb = scratch_mb  # for the measure's detail (the mount takes the request's)

    def spawn(self, request: SpawnRequest) -> Spawned:
        argv = self.command(request)
        # --die-with-parent fires when the thread that forked bwrap ends
        return Spawned(on_lasting_thread(popen_worker, argv, request))

    def command(self, request: SpawnRequest) -> list[str]:
        args = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--cap-drop",
            "ALL",
            "--die-with-parent",
            "--clearenv",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        for link in ("bin", "lib", "lib64", "sbin"):
            path = f"/{link}"
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for extra in ("/etc/ld.so.cache", "/etc/localtime"):
            if os.path.exists(extra):
                args += ["--ro-bind", extra, extra]
        args += ["--proc", "/proc", "--dev", "/dev"]
        scratch_mb = request.limits.scratch_mb
        if scratch_mb:
            args += ["--size", str(scratch_mb << 20)]
        args += ["--tmpfs", "/tmp", "--chdir", "/tmp"]
        # After the private /tmp, not before: bwrap mounts in order, and a checkout or venv that
        # lives under /tmp (CI clones often do) would otherwise be hidden under the new tmpfs.
        for path in python_roots():
            args += ["--ro-bind", path, path]
        if request.spec is not None:
            path, _kind = request.spec.context.file()
            args += ["--ro-bind", path, CONTEXT_MOUNT]
        for key, value in request.env.items():
            args += ["--setenv", key, value]
        args += worker_argv(self.python, request.read_fd, request.write_fd)
        return args

    def on_ready(self, launched: Launched) -> list[Measure]:
        # bwrap -> its pid-1 reaper -> the worker: SIGINT must reach the worker itself (found
        # now, before model code can fork children of its own)
        launched.signal_pid = leaf(launched.proc.pid)
        if launched.cgroup is not None and launched.cgroup.in_force:
            # bwrap may have forked before the host moved it: move the worker explicitly
            launched.cgroup.add(launched.signal_pid)
        return [
            Measure(
                "bwrap",
                True,
                "user, pid, net, ipc, uts, mount, cgroup namespaces; uid 65534 inside (the "
                "launching uid outside), no capabilities; read-only /usr and Python; context "
                f"read-only; private /tmp of {self.scratch_mb} MB; die-with-parent",
            )
        ]

    def interrupt(self, launched: Launched) -> None:
        sigint(launched)

    def close(self) -> None:
        pass


class BwrapEnvironment(WorkerEnvironment):
    """Every session starts its own worker under bwrap (no spare: the context is mounted)."""

    name = "bwrap"

    def __init__(
        self, *, bwrap: str | None = None, python: str = sys.executable, **kw: Any
    ) -> None:
        found = bwrap or available()
        if found is None:
            raise SandboxError(
                "the bwrap environment needs bubblewrap: apt-get install bubblewrap "
                "(make install does it as root)"
            )
        self.bwrap = found
        self.python = python
        kw.pop("prestart", None)
        limits = kw.pop("limits", None) or WorkerLimits()
        launcher = BwrapLauncher(found, python, limits.scratch_mb)
        super().__init__(launcher, limits=limits, **kw)
