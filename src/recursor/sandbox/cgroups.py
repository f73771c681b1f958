"""Memory and process-count limits for one worker through cgroups, where they are writable.

The host (not the worker) creates ``recursor/h<host pid>-w<worker pid>`` under the memory and
pids controllers (cgroup v1 hierarchies, or one cgroup v2 directory with
``memory.max``/``pids.max``), moves the worker in right after it starts, and removes the
directories once the worker is reaped. A host that was killed cannot remove its own: the next
host's first launch does (:func:`sweep`), which is why the name carries the host's pid.
Without write access (no root, no delegation) nothing is set and that is reported.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

ROOT = "/sys/fs/cgroup"


@dataclass(slots=True)
class CgroupLimit:
    """The cgroups one worker was put in, and what was set."""

    dirs: list[str] = field(default_factory=list)
    detail: str = "not attempted"

    @property
    def in_force(self) -> bool:
        return bool(self.dirs)

    def add(self, pid: int) -> None:
        """Move one more process in (a launcher's child that forked before the first move)."""
        for d in self.dirs:
            try:
                _write(os.path.join(d, "cgroup.procs"), str(pid))
            except OSError:
                pass

    def limit_memory(self, memory_bytes: int) -> None:
        """Set the memory limit anew (a spare worker's, once its session's context is known)."""
        if self.dirs:
            self.detail += f"; memory then set to {memory_bytes >> 20} MB for its context"
        for d in self.dirs:
            for name in ("memory.max", "memory.limit_in_bytes"):
                path = os.path.join(d, name)
                if os.path.isfile(path):
                    try:
                        _write(path, str(memory_bytes))
                    except OSError:
                        pass

    def release(self) -> None:
        for d in self.dirs:
            _rmdir(d)
        self.dirs = []


def _rmdir(d: str) -> None:
    """Remove a cgroup directory; a worker's last processes may take a moment to leave it
    (bwrap's reaper in its pid namespace exits after the process the host reaped)."""
    for _ in range(25):
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
            time.sleep(0.02)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _join(base: str, pid: int, files: dict[str, str]) -> str:
    d = os.path.join(base, "recursor", f"h{os.getpid()}-w{pid}")
    os.makedirs(d, exist_ok=True)
    try:
        for name, value in files.items():
            _write(os.path.join(d, name), value)
        _write(os.path.join(d, "cgroup.procs"), str(pid))
    except OSError:
        os.rmdir(d)
        raise
    return d


_swept = False
_BASES = ("memory", "pids", "")


def _owner(name: str) -> int | None:
    """The pid whose death makes a directory stale: the host of ``h<host>-w<worker>``, the
    worker of an older ``w<worker>``; None for a name that is not ours."""
    head, _, _tail = name.partition("-")
    if name.startswith("h") and head[1:].isdigit():
        return int(head[1:])
    if name.startswith("w") and name[1:].isdigit():
        return int(name[1:])
    return None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _ours(host_pid: int | None = None) -> list[str]:
    """The recursor cgroup directories (of one host, when given), across the hierarchies."""
    out = []
    for base in _BASES:
        parent = os.path.join(ROOT, base, "recursor")
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            owner = _owner(name)
            if owner is None or (host_pid is not None and not name.startswith(f"h{host_pid}-")):
                continue
            out.append(os.path.join(parent, name))
    return sorted(out)


def host_dirs(host_pid: int) -> list[str]:
    """The cgroup directories a host (by pid) made and did not remove."""
    return _ours(host_pid)


def sweep() -> int:
    """Remove the cgroups left by hosts that are gone (killed before they could release
    them); the number removed. A directory whose owner still runs is left alone, and one that
    still holds a process cannot be removed (the kernel refuses)."""
    removed = 0
    for d in _ours():
        owner = _owner(os.path.basename(d))
        if owner is None or not _gone(owner):
            continue
        try:
            os.rmdir(d)
            removed += 1
        except OSError:
            pass
    return removed


def attach(pid: int, memory_bytes: int | None, pids_max: int | None) -> CgroupLimit:
    """Put ``pid`` in fresh cgroups with these limits (each one that can be set)."""
    global _swept
    if not _swept:
        _swept = True
        sweep()
    out = CgroupLimit()
    notes: list[str] = []
    v1_mem, v1_pids = os.path.join(ROOT, "memory"), os.path.join(ROOT, "pids")
    try:
        if os.path.isfile(os.path.join(v1_mem, "memory.limit_in_bytes")):
            if memory_bytes is not None:
                out.dirs.append(_join(v1_mem, pid, {"memory.limit_in_bytes": str(memory_bytes)}))
                notes.append(f"memory {memory_bytes >> 20} MB")
            if pids_max is not None and os.path.isdir(v1_pids):
                out.dirs.append(_join(v1_pids, pid, {"pids.max": str(pids_max)}))
                notes.append(f"pids {pids_max}")
        elif os.path.isfile(os.path.join(ROOT, "cgroup.controllers")):
            files = {}
            if memory_bytes is not None:
                files["memory.max"] = str(memory_bytes)
            if pids_max is not None:
                files["pids.max"] = str(pids_max)
            out.dirs.append(_join(ROOT, pid, files))
            notes.append(", ".join(f"{k}={v}" for k, v in files.items()))
        else:
            out.detail = "no cgroup memory controller found"
            return out
    except OSError as exc:
        out.detail = f"not writable ({exc.strerror})"
        out.release()
        return out
    out.detail = "cgroup " + ", ".join(notes)
    return out
