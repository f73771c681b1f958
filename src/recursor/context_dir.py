"""A directory as a context: its text files, read without ever leaving the directory.

A directory handed over as context is often someone else's (a cloned repository, an unpacked
archive), so it is read as hostile input: what it names may point anywhere.

* Only regular files are read. Each is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with
  ``fstat`` on the open descriptor, so a FIFO never blocks the read, a device (``/dev/zero``)
  is never read at all, and a file swapped for a link between the listing and the open is
  refused rather than followed.
* A symbolic link is followed only when its full resolution stays inside the directory; a link
  that leads out (to ``/etc/shadow``, ``~/.aws/credentials``) is skipped and reported, as are
  links to directories (no cycles, no second walk of the same files).
* Bounds: a file over ``max_file_bytes`` is skipped (reported); more than ``max_files`` files or
  ``max_bytes`` in all is a :class:`~recursor.errors.ContextError` naming the limit, raised
  before the bytes past it are read.

Hidden entries and the usual tool directories (``.git``, ``node_modules``, ...) are left out;
files that look binary (a NUL byte in their first 8 KiB) are skipped and reported.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from recursor.errors import ContextError

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv"})
#: defaults; every one can be raised by the caller
MAX_FILE_BYTES = 20 << 20
MAX_BYTES = 1 << 30
MAX_FILES = 100_000
_SNIFF = 8192

#: called now and then with (files read, bytes read) so a caller can show progress
Progress = Callable[[int, int], None]


@dataclass(slots=True)
class Skipped:
    """A directory entry that was not read, and why."""

    path: str
    reason: str


@dataclass(slots=True)
class DirectoryContext:
    """The text files of a directory, by relative path, and what was left out."""

    docs: dict[str, str] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    total_bytes: int = 0


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _open_regular(path: str) -> tuple[int, int] | str:
    """An fd open on ``path`` and its size, or why it is not read (never blocks, never follows)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a link swapped in while reading"
        return f"unreadable ({exc.strerror})"
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        return f"not a regular file ({kind})"
    return fd, st.st_size


def _read_fd(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    with os.fdopen(fd, "rb", closefd=True) as f:
        while left > 0 and (chunk := f.read(min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    return b"".join(chunks)


def read_directory(
    directory: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_BYTES,
    max_files: int = MAX_FILES,
    max_file_bytes: int = MAX_FILE_BYTES,
    progress: Progress | None = None,
) -> DirectoryContext:
    """Read the text files under ``directory`` (see the module docstring for the rules)."""
    root = os.path.realpath(directory)
    if not os.path.isdir(root):
        raise ContextError(f"context directory {os.fspath(directory)!r} is not a directory")
    out = DirectoryContext()
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = _dirs_to_walk(current, dirs, root, out)
        for name in sorted(files):
            if name.startswith("."):
                continue
            if len(out.docs) >= max_files:
                raise ContextError(
                    f"context directory {os.fspath(directory)!r} has more than {max_files:,} "
                    "files (max_files); pass a subdirectory or raise the limit"
                )
            room = max_bytes - out.total_bytes
            if not _read_one(os.path.join(current, name), root, out, max_file_bytes, room):
                raise ContextError(
                    f"context directory {os.fspath(directory)!r} holds more than "
                    f"{max_bytes:,} bytes of text (max_bytes); pass a subdirectory or raise the "
                    "limit"
                )
            if progress is not None and len(out.docs) % 100 == 0:
                progress(len(out.docs), out.total_bytes)
    if progress is not None:
        progress(len(out.docs), out.total_bytes)
    return out


def _dirs_to_walk(current: str, dirs: list[str], root: str, out: DirectoryContext) -> list[str]:
    """The subdirectories of ``current`` to descend into, sorted; a link to one is recorded as
    skipped (it may lead outside ``root``), hidden and SKIP_DIRS ones are passed silently."""
    keep = []
    for d in sorted(dirs):
        full = os.path.join(current, d)
        if d in SKIP_DIRS or d.startswith("."):
            continue
        if os.path.islink(full):
            out.skipped.append(Skipped(os.path.relpath(full, root), "a link to a directory"))
            continue
        keep.append(d)
    return keep


def _read_one(full: str, root: str, out: DirectoryContext, max_file_bytes: int, room: int) -> bool:
    """Read one entry into ``out`` (or record why not); False when it would pass ``room``."""
    rel = os.path.relpath(full, root)
    target = full
    if os.path.islink(full):
        target = os.path.realpath(full)
        if not _inside(target, root):
            out.skipped.append(Skipped(rel, "a link leading outside the directory"))
            return True
    opened = _open_regular(target)
    if isinstance(opened, str):
        out.skipped.append(Skipped(rel, opened))
        return True
    fd, size = opened
    if size > max_file_bytes:
        os.close(fd)
        out.skipped.append(Skipped(rel, f"larger than {max_file_bytes:,} bytes"))
        return True
    if size > room:
        os.close(fd)
        return False
    data = _read_fd(fd, size)
    if b"\0" in data[:_SNIFF]:
        out.skipped.append(Skipped(rel, "binary"))
        return True
    out.docs[rel] = data.decode("utf-8", "replace")
    out.total_bytes += len(data)
    return True
