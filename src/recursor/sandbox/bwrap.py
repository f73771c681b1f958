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
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from recursor.errors import SandboxError
from recursor.sandbox.base import SessionSpec
from recursor.sandbox.hardening import Measure
from recursor.sandbox.subprocess import WORKER_PATH, Launched, SubprocessEnvironment

CONTEXT_MOUNT = "/run/recursor/context"
_SANDBOX_UID = 65534
#: --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread* that forked bwrap
#: ends: launches happen on these long-lived pool threads (they never exit), never on a
#: short-lived caller's
_LAUNCHER = ThreadPoolExecutor(8, thread_name_prefix="recursor-bwrap-launch")


def available() -> str | None:
    """The bwrap binary, when it is installed."""
    return shutil.which("bwrap")


class BwrapEnvironment(SubprocessEnvironment):
    name = "bwrap"

    def __init__(self, *, bwrap: str | None = None, **kw: Any) -> None:
        kw.setdefault("prestart", False)
        super().__init__(**kw)
        self.bwrap = bwrap or available()
        if self.bwrap is None:
            raise SandboxError(
                "the bwrap environment needs bubblewrap: apt-get install bubblewrap "
                "(make install does it as root)"
            )

    def take(self, spec: SessionSpec | None = None) -> Launched:
        return _LAUNCHER.submit(self.launch, spec).result()

    def command(self, read_fd: int, write_fd: int, spec: SessionSpec | None = None) -> list[str]:
        assert self.bwrap is not None
        args = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--uid",
            str(_SANDBOX_UID),
            "--gid",
            str(_SANDBOX_UID),
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
        if self.limits.scratch_mb:
            args += ["--size", str(self.limits.scratch_mb << 20)]
        args += ["--tmpfs", "/tmp", "--chdir", "/tmp"]
        # After the private /tmp, not before: bwrap mounts in order, and a checkout or venv that
        # lives under /tmp (CI clones often do) would otherwise be hidden under the new tmpfs.
        for path in _roots(_worker_python_paths()):
            args += ["--ro-bind", path, path]
        if spec is not None:
            path, _kind = spec.context.file()
            args += ["--ro-bind", path, CONTEXT_MOUNT]
        for key, value in self.worker_env().items():
            args += ["--setenv", key, value]
        args += [self.python, "-I", str(WORKER_PATH), str(read_fd), str(write_fd)]
        return args

    def context_path(self, host_path: str) -> str:
        return CONTEXT_MOUNT

    def sandbox_config(self) -> dict[str, Any] | None:
        # bwrap did the namespaces and the uid; the worker adds Landlock and seccomp
        return {"namespaces": False, "drop_uid": False, "scratch_mb": self.limits.scratch_mb}

    def host_measures(self, launched: Launched) -> list[Measure]:
        if launched.cgroup is not None and launched.cgroup.in_force:
            # bwrap may have forked before the host moved it: move the worker explicitly
            launched.cgroup.add(_leaf(launched.proc.pid))
        return [
            Measure(
                "bwrap",
                True,
                "user, pid, net, ipc, uts, mount, cgroup namespaces; uid 65534 inside (the "
                "launching uid outside), no capabilities; read-only /usr and Python; context "
                f"read-only; private /tmp of {self.limits.scratch_mb} MB; die-with-parent",
            ),
            *super().host_measures(launched),
        ]

    def interrupt_pid(self, launched: Launched) -> int:
        # bwrap -> its pid-1 reaper -> the worker: SIGINT must reach the worker itself
        return _leaf(launched.proc.pid)


def _worker_python_paths() -> list[str]:
    """What the worker's interpreter reads: its prefixes, site-packages and this package."""
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = {sys.base_prefix, sys.prefix, package}
    paths.update(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    return [p for p in paths if os.path.isdir(p)]


def _roots(paths: list[str]) -> list[str]:
    """The paths, minus those inside another one (a bind of the parent covers them)."""
    out: list[str] = []
    for p in sorted({os.path.realpath(p) for p in paths} | set(paths), key=len):
        if not os.path.isdir(p) or p.startswith("/usr/"):
            continue
        if not any(p == r or p.startswith(r.rstrip("/") + "/") for r in out):
            out.append(p)
    return out


def _leaf(pid: int) -> int:
    """The deepest first descendant of ``pid`` (``pid`` itself when it has no children)."""
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return pid
        if not kids:
            return pid
        pid = int(kids[0])
    return pid
