"""A small seccomp-BPF deny-list, built with ctypes (no libseccomp binding is needed).

What it refuses (``EPERM``, so model code sees a plain ``PermissionError``): new sockets and
network calls (``socket``, ``connect``, ``bind``, ...), new programs (``execve``,
``execveat``), new processes (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``),
debugging and memory peeking (``ptrace``, ``process_vm_*``), mounts and namespaces, kernel
modules, BPF, io_uring (which could do all of the above behind the filter's back), keyrings,
file watching (``inotify_*``, ``fanotify_*``: it showed the names of files other processes
create in readable directories, the host's temp dir and ``/etc``), and signals to any
process but itself (``kill``/``tgkill`` only with its own pid).

Threads stay allowed on purpose: model code fans sub-calls out with a ThreadPoolExecutor, and a
thread can do nothing here that the thread it came from cannot. ``clone3`` answers ``ENOSYS``
so glibc falls back to ``clone``, whose flags a filter can inspect (clone3's live in memory).

A deny-list, not an allow-list: CPython's runtime needs a long tail of harmless calls, and an
allow-list that misses one breaks model code in ways that look like bugs. The dangerous
families are denied by name, and every syscall of a foreign ABI (x32, i386) kills the process.
x86_64 only; elsewhere :func:`install` reports that it is not in force.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000

# BPF opcodes
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06

RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000

# offsets in struct seccomp_data
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16

CLONE_THREAD = 0x00010000

#: x86_64 syscall numbers refused with EPERM
DENIED: dict[str, int] = {
    # networking: the only channel is the two inherited pipes
    "socket": 41,
    "connect": 42,
    "accept": 43,
    "bind": 49,
    "listen": 50,
    "socketpair": 53,
    "accept4": 288,
    # new processes and programs
    "fork": 57,
    "vfork": 58,
    "execve": 59,
    "execveat": 322,
    # looking into or steering other processes
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "pidfd_open": 434,
    "pidfd_getfd": 438,
    "pidfd_send_signal": 424,
    "tkill": 200,
    "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297,
    "setsid": 112,
    "setpgid": 109,
    # file systems, namespaces, the kernel itself
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "unshare": 272,
    "setns": 308,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "personality": 135,
    "syslog": 103,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "iopl": 172,
    "ioperm": 173,
    "acct": 163,
    "quotactl": 179,
    "settimeofday": 164,
    "clock_settime": 227,
    "adjtimex": 159,
    # watching files: a worker told of names and events in the host's temp dir and /etc
    "inotify_init": 253,
    "inotify_add_watch": 254,
    "inotify_init1": 294,
    "fanotify_init": 300,
    "fanotify_mark": 301,
}
_CLONE, _CLONE3, _KILL, _TGKILL = 56, 435, 62, 234


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_filter(own_pid: int) -> bytes:
    """The BPF program, as the bytes of a ``struct sock_filter[]``."""
    eperm = RET_ERRNO | errno.EPERM
    prog = [
        _insn(_LD_W_ABS, 0, 0, _OFF_ARCH),
        _insn(_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, _OFF_NR),
        _insn(_JGE_K, 0, 1, _X32_BIT),
        _insn(_RET_K, 0, 0, RET_KILL_PROCESS),
    ]
    for nr in sorted(set(DENIED.values())):
        prog += [_insn(_JEQ_K, 0, 1, nr), _insn(_RET_K, 0, 0, eperm)]
    # clone: threads only
    prog += [
        _insn(_JEQ_K, 0, 4, _CLONE),
        _insn(_LD_W_ABS, 0, 0, _OFF_ARG0),
        _insn(_JSET_K, 0, 1, CLONE_THREAD),
        _insn(_RET_K, 0, 0, RET_ALLOW),
        _insn(_RET_K, 0, 0, eperm),
    ]
    prog += [_insn(_JEQ_K, 0, 1, _CLONE3), _insn(_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS)]
    # kill / tgkill: only to itself (CPython's signal machinery and raise() use them)
    for nr in (_KILL, _TGKILL):
        prog += [
            _insn(_JEQ_K, 0, 4, nr),
            _insn(_LD_W_ABS, 0, 0, _OFF_ARG0),
            _insn(_JEQ_K, 0, 1, own_pid),
            _insn(_RET_K, 0, 0, RET_ALLOW),
            _insn(_RET_K, 0, 0, eperm),
            _insn(_LD_W_ABS, 0, 0, _OFF_NR),  # reload nr for the next test
        ]
    prog.append(_insn(_RET_K, 0, 0, RET_ALLOW))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


PR_SET_NO_NEW_PRIVS = 38
_SYS_SECCOMP = 317
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1


def supported() -> bool:
    return platform.system() == "Linux" and platform.machine() == "x86_64"


def install() -> tuple[bool, str]:
    """Install the filter on every thread of this process; (in force?, detail)."""
    if not supported():
        return False, f"no filter for {platform.system()}/{platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False, f"PR_SET_NO_NEW_PRIVS failed: {os.strerror(ctypes.get_errno())}"
    code = build_filter(os.getpid())
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    rc = libc.syscall(
        _SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog)
    )
    if rc != 0:
        return False, f"seccomp() failed: {os.strerror(ctypes.get_errno())}"
    return True, (
        f"{len(DENIED) + 3} syscalls refused (no sockets, exec, fork, ptrace, mount, "
        "io_uring, inotify; signals only to itself); threads allowed"
    )
