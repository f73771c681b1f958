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
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from recursor.errors import SandboxError
from recursor.sandbox.base import SessionSpec
from recursor.sandbox.bwrap import CONTEXT_MOUNT, _roots, _worker_python_paths
from recursor.sandbox.hardening import Measure
from recursor.sandbox.subprocess import WORKER_PATH, Launched, SubprocessEnvironment

_SANDBOX_UID = 65534
_CAPS = ["CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"]
_ids = itertools.count()
# runsc's sandbox dies with the thread that started it (PDEATHSIG), as bwrap's does
_LAUNCHER = ThreadPoolExecutor(8, thread_name_prefix="recursor-runsc-launch")


def available() -> str | None:
    return shutil.which("runsc")


class GvisorEnvironment(SubprocessEnvironment):
    name = "gvisor"
    stdio_channel = True
    # runsc's sandbox and gofer are not children of the process we start: rlimits only
    use_cgroups = False

    def __init__(self, *, runsc: str | None = None, **kw: Any) -> None:
        kw.setdefault("prestart", False)
        super().__init__(**kw)
        self.runsc = runsc or available()
        if self.runsc is None:
            raise SandboxError(
                "the gvisor environment needs runsc: apt-get install runsc "
                "(make install tries it as root)"
            )
        # runsc's state and the bundles; removed with the environment
        self._root = tempfile.mkdtemp(prefix="recursor-runsc-")
        self._finalize_root = weakref.finalize(self, shutil.rmtree, self._root, True)
        self._ids: dict[int, str] = {}
        self._local = threading.local()  # the id of the container a thread is launching
        self._bundles: dict[str, str] = {}

    def take(self, spec: SessionSpec | None = None) -> Launched:
        return _LAUNCHER.submit(self._launch, spec).result()

    def _launch(self, spec: SessionSpec | None) -> Launched:
        self._local._pending_id = f"recursor-{os.getpid()}-{next(_ids)}"
        launched = self.launch(spec)
        cid = self._local._pending_id
        self._ids[launched.proc.pid] = cid
        # killing the container first lets `runsc run` exit and remove it (~40 ms); killing
        # runsc first would leave `delete --force` waiting on the orphaned sandbox (~1.5 s)
        launched.stop = lambda: self._runsc("kill", "--all", cid, "KILL")
        launched.cleanup = lambda: self._delete(cid)
        return launched

    def _runsc(self, *args: str) -> None:
        assert self.runsc is not None
        subprocess.run(
            [self.runsc, "--root", self._root, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )

    def _delete(self, cid: str) -> None:
        bundle = self._bundles.pop(cid, None)
        self._ids = {k: v for k, v in self._ids.items() if v != cid}
        self._runsc("delete", "--force", cid)  # a no-op when `runsc run` removed it already
        if bundle is not None:
            shutil.rmtree(bundle, ignore_errors=True)

    def bundle(self, read_fd: int, write_fd: int, spec: SessionSpec | None) -> str:
        """Write an OCI bundle (config.json and an empty root) and return its directory."""
        path = Path(tempfile.mkdtemp(prefix="bundle-", dir=self._root))
        rootfs = path / "rootfs"
        rootfs.mkdir()
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                (rootfs / link).symlink_to(os.readlink(f"/{link}"))
        ro = ["rbind", "ro", "nosuid", "nodev"]
        mounts: list[dict[str, Any]] = [
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ro},
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", f"size={self.limits.scratch_mb or 256}m"],
            },
        ]
        mounts += [
            {"destination": p, "type": "bind", "source": p, "options": ro}
            for p in _roots(_worker_python_paths())
        ]
        if spec is not None:
            ctx_path, _kind = spec.context.file()
            mounts.append(
                {"destination": CONTEXT_MOUNT, "type": "bind", "source": ctx_path, "options": ro}
            )
        config = {
            "ociVersion": "1.0.0",
            "process": {
                "terminal": False,
                # root of the Sentry only, holding just what it takes to load the context (a
                # host file of mode 600) and then become _SANDBOX_UID (the worker does that)
                "user": {"uid": 0, "gid": 0},
                "args": [self.python, "-I", str(WORKER_PATH), str(read_fd), str(write_fd)],
                "env": [f"{k}={v}" for k, v in self.worker_env().items()],
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
        self._bundles[self._local._pending_id] = str(path)
        return str(path)

    def command(self, read_fd: int, write_fd: int, spec: SessionSpec | None = None) -> list[str]:
        assert self.runsc is not None
        bundle = self.bundle(read_fd, write_fd, spec)
        return [
            self.runsc,
            "--root",
            self._root,
            "--network=none",
            "--ignore-cgroups",
            "run",
            "--bundle",
            bundle,
            self._local._pending_id,
        ]

    def context_path(self, host_path: str) -> str:
        return CONTEXT_MOUNT

    def sandbox_config(self) -> dict[str, Any] | None:
        return {
            "namespaces": False,
            "drop_uid": True,
            "uid": _SANDBOX_UID,
            "scratch_mb": self.limits.scratch_mb,
        }

    def host_measures(self, launched: Launched) -> list[Measure]:
        return [
            Measure(
                "gvisor",
                True,
                "runsc user-space kernel; no network; pid, ipc, uts, mount namespaces; "
                "read-only root with only /usr and Python; context read-only; "
                f"private /tmp of {self.limits.scratch_mb} MB",
            ),
            *super().host_measures(launched),
        ]

    def interrupt(self, launched: Launched, pid: int) -> None:
        # `runsc run` does not forward SIGINT: ask runsc to signal the container's process
        assert self.runsc is not None
        cid = self._ids.get(launched.proc.pid)
        if cid is not None:
            self._runsc("kill", cid, "SIGINT")

    def close(self) -> None:
        super().close()
        self._finalize_root()


__all__ = ["GvisorEnvironment", "available"]
