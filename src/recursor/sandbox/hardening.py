"""What the worker does to itself, once its context is loaded, before it runs any model code.

In order (each step is skipped, and reported as not in force, where the OS refuses it):

1. **mount, network, IPC and UTS namespaces** (as root): a private mount table, no network
   interfaces at all, and a size-capped tmpfs mounted over the scratch directory, so filling
   the disk fills only that. Directories the unprivileged uid could not traverse on the way to
   the interpreter (pyenv under ``/root``, mode 700) are replaced, in this mount table only, by
   a tmpfs that holds nothing but read-only bind mounts of what Python needs: the rest of
   ``/root`` disappears.
2. **an unprivileged uid/gid** of its own (root ignores RLIMIT_NPROC and file modes), no
   supplementary groups.
3. **a user namespace** entered as that uid, then every capability dropped (the new user
   namespace hands out a full set that must not stay). No PID namespace: unsharing one makes
   the kernel refuse new threads (``clone(CLONE_THREAD)`` -> EINVAL), and model code fans
   sub-calls out on threads; seccomp forbids new processes, so a PID namespace would hold
   nothing. (bwrap runs the worker in a real one.)
4. **Landlock**: read-only the interpreter, the stdlib, site-packages, the package, ``/usr``,
   a few files of ``/etc`` and the context file; read-write the scratch directory; nothing
   else. On ABI >= 4 TCP bind/connect are refused; on ABI >= 6 signals cannot leave the sandbox.
5. **seccomp** (see :mod:`recursor.sandbox.seccomp`): no sockets, exec, fork, ptrace, mount.

rlimits are applied earlier by the worker; cgroups, the scrubbed environment and the
process-group kill are the host's (see :mod:`recursor.sandbox.subprocess`).
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from recursor.sandbox import landlock, seccomp

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_DUMPABLE = 4
_SYS_CAPSET = 126
#: modules imported before confinement: what model code reaches for first
WARM_MODULES = ("re", "json", "collections", "math", "itertools", "functools", "textwrap")


@dataclass(frozen=True, slots=True)
class Measure:
    """One confinement measure and whether it is in force for this worker."""

    name: str
    in_force: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measure:
        return cls(str(d["name"]), bool(d["in_force"]), str(d["detail"]))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _err() -> str:
    return os.strerror(ctypes.get_errno())


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    libc = _libc()
    if libc.mount(enc(src), target.encode(), enc(fstype), ctypes.c_ulong(flags), data.encode()):
        raise OSError(ctypes.get_errno(), f"mount {target}: {_err()}")


def python_paths() -> list[str]:
    """Everything the interpreter may need to read after confinement."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(p for p in sys.path if p and os.path.exists(p))
    paths.update(os.path.realpath(p) for p in list(paths))
    return sorted(paths)


def _blocked_ancestor(path: str) -> tuple[str, str] | None:
    """The first ancestor others cannot traverse, and the child of it on the way to ``path``."""
    parts = os.path.realpath(path).strip("/").split("/")
    cur = "/"
    for part in parts[:-1]:
        try:
            mode = os.stat(cur).st_mode
        except OSError:
            return None
        if not mode & stat.S_IXOTH:
            return cur, part
        cur = os.path.join(cur, part)
    try:
        if not os.stat(cur).st_mode & stat.S_IXOTH:
            return cur, parts[-1]
    except OSError:
        return None
    return None


def _expose(paths: Iterable[str]) -> list[str]:
    """In a private mount table: cover blocked ancestors with a tmpfs holding only binds."""
    groups: dict[str, set[str]] = {}
    for p in paths:
        hit = _blocked_ancestor(p)
        if hit is not None:
            groups.setdefault(hit[0], set()).add(hit[1])
    done = []
    for parent, children in groups.items():
        fds = {c: os.open(os.path.join(parent, c), os.O_PATH | os.O_CLOEXEC) for c in children}
        try:
            _mount("tmpfs", parent, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            for child, fd in fds.items():
                target = os.path.join(parent, child)
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.mkdir(target)
                else:
                    open(target, "w").close()
                _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
                _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
                done.append(target)
        finally:
            for fd in fds.values():
                os.close(fd)
    return done


class Hardener:
    """Applies the measures named in the init frame's ``sandbox`` section, in order."""

    def __init__(self, cfg: dict[str, Any], context_path: str) -> None:
        self.cfg = cfg
        self.context_path = context_path
        self.scratch = os.getcwd()
        self.measures: list[Measure] = []
        self.uid: int | None = None

    def note(self, name: str, in_force: bool, detail: str) -> None:
        self.measures.append(Measure(name, in_force, detail))

    def run(self) -> list[Measure]:
        for mod in WARM_MODULES:
            __import__(mod)
        if sys.platform != "linux":
            self.note("confinement", False, f"no OS confinement on {sys.platform}")
            return self.measures
        is_root = os.geteuid() == 0
        if self.cfg.get("namespaces", True):
            self._namespaces(is_root)
        if self.cfg.get("drop_uid", True):
            self._drop_uid(is_root)
        if self.cfg.get("namespaces", True):
            self._user_ns()
        os.environ["TMPDIR"] = os.environ["HOME"] = self.scratch
        if self.cfg.get("landlock", True):
            self._landlock()
        if self.cfg.get("seccomp", True):
            in_force, detail = seccomp.install()
            self.note("seccomp", in_force, detail)
            self.note(
                "inotify denied",
                in_force,
                "inotify_init, inotify_init1, inotify_add_watch, fanotify_init, fanotify_mark "
                "refused by seccomp"
                if in_force
                else detail,
            )
        return self.measures

    # -- 1 ----------------------------------------------------------------------------------------
    def _namespaces(self, is_root: bool) -> None:
        if not is_root:
            self.note("namespaces (mount, net, ipc, uts)", False, "needs root; see user ns below")
            self.note("scratch quota", False, "needs a private mount table")
            return
        libc = _libc()
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        if libc.unshare(flags) != 0:
            self.note("namespaces (mount, net, ipc, uts)", False, f"unshare: {_err()}")
            return
        self.note("namespaces (mount, net, ipc, uts)", True, "no network interfaces; own mounts")
        try:
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
            exposed = _expose(python_paths())
            if exposed:
                self.note(
                    "hidden host directories",
                    True,
                    f"only {', '.join(exposed)} visible (read-only) in their parent",
                )
        except OSError as exc:
            self.note("hidden host directories", False, str(exc))
        self.uid = self._pick_uid()
        size = self.cfg.get("scratch_mb")
        try:
            opts = f"mode=0700,uid={self.uid},gid={self.uid}"
            if size:
                opts += f",size={int(size)}m"
            _mount("tmpfs", self.scratch, "tmpfs", MS_NOSUID | MS_NODEV, opts)
            os.chdir(self.scratch)  # the old cwd is under the new mount
            self.note("scratch quota", True, f"private tmpfs of {size} MB at the cwd")
        except OSError as exc:
            self.note("scratch quota", False, str(exc))

    def _pick_uid(self) -> int:
        uid = self.cfg.get("uid")
        # one uid per worker: RLIMIT_NPROC and kill(-1) then concern this worker alone
        return int(uid) if uid is not None else 200_000 + os.getpid() % 100_000

    # -- 2 ----------------------------------------------------------------------------------------
    def _drop_uid(self, is_root: bool) -> None:
        if not is_root:
            self.note("unprivileged uid", os.geteuid() != 0, f"already uid {os.geteuid()}")
            return
        uid = self.uid if self.uid is not None else self._pick_uid()
        self.uid = uid
        blocked = [p for p in python_paths() if _blocked_ancestor(p)]
        if blocked:
            self.note("unprivileged uid", False, f"{blocked[0]} would become unreadable")
            return
        try:
            if os.stat(self.scratch).st_uid != uid:
                os.chown(self.scratch, uid, uid)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        except OSError as exc:
            self.note("unprivileged uid", False, str(exc))
            return
        self.note("unprivileged uid", True, f"uid/gid {uid}, no groups, no capabilities")

    # -- 3 ----------------------------------------------------------------------------------------
    def _user_ns(self) -> None:
        libc = _libc()
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            self.note("user namespace", False, "still root: not entered")
            return
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # lets us write our own /proc/self/*_map
        try:
            if libc.unshare(CLONE_NEWUSER) != 0:
                self.note("user namespace", False, f"unshare(user): {_err()}")
                return
            for name, text in (
                ("uid_map", f"{uid} {uid} 1"),
                ("setgroups", "deny"),
                ("gid_map", f"{gid} {gid} 1"),
            ):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            # the new user namespace granted a full capability set: give it all back
            header = (ctypes.c_uint32 * 2)(0x20080522, 0)
            data = (ctypes.c_uint32 * 6)()
            if libc.syscall(_SYS_CAPSET, header, data) != 0:
                self.note("user namespace", False, f"capset: {_err()}")
                return
            self.note("user namespace", True, f"uid {uid} mapped alone; capabilities dropped")
        except OSError as exc:
            self.note("user namespace", False, str(exc))
        finally:
            libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)

    # -- 4 ----------------------------------------------------------------------------------------
    def _landlock(self) -> None:
        read_only = [
            *python_paths(),
            *self.cfg.get("read_only", []),
            "/usr",
            "/lib",
            "/lib64",
            "/etc/ld.so.cache",
            "/etc/localtime",
            "/dev/urandom",
            self.context_path,
        ]
        read_write = [self.scratch, "/dev/null"]
        self.note("landlock", *landlock.restrict(read_only, read_write))
