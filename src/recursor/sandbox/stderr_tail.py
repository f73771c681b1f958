"""The worker's stderr: a pipe the host drains into a bounded buffer, never a file.

It used to be a host temp file, which model code could ``fallocate`` or fill (1 GB of host disk,
outside the worker's 256 MB scratch). Now it is a pipe: the worker cannot seek, fallocate or
keep anything in it, and a thread of the host reads it as it comes, keeping only the last
:data:`KEEP_BYTES` (for the crash detail the model is shown) and counting the rest.
"""

from __future__ import annotations

import os
import threading
from typing import IO

#: how much of the end of a worker's stderr the host keeps
KEEP_BYTES = 64 * 1024
_CHUNK = 64 * 1024


class StderrTail:
    """One worker's stderr pipe and the last :data:`KEEP_BYTES` that came through it."""

    def __init__(self, keep: int = KEEP_BYTES) -> None:
        read_fd, write_fd = os.pipe()
        #: the write end: handed to the launcher (a remote launcher writes its output here)
        self.writer: IO[bytes] = os.fdopen(write_fd, "wb", buffering=0)
        self._keep = keep
        self._buf = bytearray()
        self._lock = threading.Lock()
        #: bytes read and dropped because the buffer was full (the oldest go first)
        self.dropped = 0
        self._thread = threading.Thread(
            target=self._drain, args=(read_fd,), daemon=True, name="recursor-stderr"
        )
        self._thread.start()

    def _drain(self, fd: int) -> None:
        try:
            while chunk := os.read(fd, _CHUNK):
                with self._lock:
                    self._buf += chunk
                    over = len(self._buf) - self._keep
                    if over > 0:
                        del self._buf[:over]
                        self.dropped += over
        except OSError:
            # the fd was closed under us (EBADF: by someone else's double close): the number
            # may already be another file's, so it is not ours to close
            return
        os.close(fd)

    def release_writer(self) -> None:
        """Close the host's copy of the write end (the worker has its own): then the pipe ends
        when the worker does, and :meth:`tail` can wait for its last words."""
        self.writer.close()

    def tail(self, limit: int = 2000, *, wait_s: float = 0.2) -> str:
        """The last ``limit`` bytes, decoded; waits up to ``wait_s`` for the pipe to end when
        only the worker still holds it (so a dead worker's last line is not missed)."""
        if self.writer.closed:
            self._thread.join(wait_s)
        with self._lock:
            data = bytes(self._buf[-limit:])
            dropped = self.dropped + max(0, len(self._buf) - limit)
        text = data.decode("utf-8", "replace").strip()
        if text and dropped:
            text = f"[{dropped} earlier bytes not kept] {text}"
        return text

    def close(self) -> None:
        """Close the write end; the drain thread ends with the pipe (when the worker is gone)."""
        self.writer.close()
