"""Memory and process-count limits for one worker through cgroups, where they are writable.

The host (not the worker) creates ``recursor/w<pid>`` under the memory and pids controllers
(cgroup v1 hierarchies, or one cgroup v2 directory with ``memory.max``/``pids.max``), moves the
worker in right after it starts, and removes the directories once the worker is reaped.
Without write access (no root, no delegation) nothing is set and that is reported.
"""

from __future__ import annotations

import os
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
            try:
                os.rmdir(d)
            except OSError:
                pass
        self.dirs = []


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _join(base: str, pid: int, files: dict[str, str]) -> str:
    d = os.path.join(base, "recursor", f"w{pid}")
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


def sweep() -> int:
    """Remove the cgroups of workers that are gone without a release (their host was killed);
    the number removed. A directory whose worker still runs is left alone."""
    removed = 0
    for base in (os.path.join(ROOT, "memory"), os.path.join(ROOT, "pids"), ROOT):
        parent = os.path.join(base, "recursor")
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if not (name.startswith("w") and name[1:].isdigit()):
                continue
            try:
                os.kill(int(name[1:]), 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except OSError:
                continue
            try:
                os.rmdir(os.path.join(parent, name))
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
