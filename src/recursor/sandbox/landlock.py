"""Landlock through raw syscalls (ctypes): file-system allow-lists an unprivileged process
can put on itself, for good.

ABI 1 handles the basic file rights; 2 adds REFER, 3 TRUNCATE, 4 TCP bind/connect, 5 device
ioctls, 6 scopes (abstract unix sockets, signals to processes outside the domain). We ask for
every right the running kernel knows, so anything not granted by a rule is refused.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from collections.abc import Iterable

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13
TRUNCATE = 1 << 14
IOCTL_DEV = 1 << 15

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2

#: what a read-only rule grants (executing too: the interpreter maps extension modules)
READ_ONLY = EXECUTE | READ_FILE | READ_DIR
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 when there is none (or not Linux/x86_64)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    v = libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return max(0, int(v))


def _fs_rights(abi: int) -> int:
    best = max(k for k in _FS_BY_ABI if k <= abi)
    return _FS_BY_ABI[best]


def restrict(read_only: Iterable[str], read_write: Iterable[str]) -> tuple[bool, str]:
    """Allow only these paths (and what is beneath them) from now on; (in force?, detail).

    Paths that do not exist are skipped. Needs no_new_privs (set here) or CAP_SYS_ADMIN.
    """
    abi = abi_version()
    if abi < 1:
        return False, "the kernel has no Landlock"
    libc = _libc()
    fs = _fs_rights(abi)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _ruleset_attr(abi, fs, net, scoped)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_SYS_CREATE_RULESET, buf, len(attr), 0)
    if ruleset < 0:
        return False, f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}"
    try:
        rules = [(p, READ_ONLY) for p in read_only] + [(p, fs) for p in read_write]
        granted, failure = _add_path_rules(libc, ruleset, rules, fs)
        failure = failure or _restrict_self(libc, ruleset)
    finally:
        os.close(ruleset)
    if failure:
        return False, failure
    extra = []
    if net:
        extra.append("TCP bind/connect denied")
    if scoped:
        extra.append("signals and abstract sockets scoped to the sandbox")
    tail = f"; {', '.join(extra)}" if extra else ""
    return True, f"ABI {abi}, {granted} path rules{tail}"


def _ruleset_attr(abi: int, fs: int, net: int, scoped: int) -> bytes:
    """``struct landlock_ruleset_attr`` as long as this ABI knows it (it grew a field at 4, 6)."""
    if abi >= 6:
        return struct.pack("QQQ", fs, net, scoped)
    if abi >= 4:
        return struct.pack("QQ", fs, net)
    return struct.pack("Q", fs)


def _add_path_rules(
    libc: ctypes.CDLL, ruleset: int, rules: list[tuple[str, int]], fs: int
) -> tuple[int, str | None]:
    """Add a path-beneath rule per existing path; (rules added, the failure if one failed)."""
    granted = 0
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            allowed = rights & fs
            if not os.path.isdir(path):
                allowed &= _FILE_RIGHTS
            rule = ctypes.create_string_buffer(struct.pack("=Qi", allowed, fd), 12)
            if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, 0) != 0:
                return granted, f"landlock_add_rule({path}): {os.strerror(ctypes.get_errno())}"
            granted += 1
        finally:
            os.close(fd)
    return granted, None


def _restrict_self(libc: ctypes.CDLL, ruleset: int) -> str | None:
    """Put the ruleset in force on this process; the failure, or None."""
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        return f"PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}"
    if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
        return f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}"
    return None
