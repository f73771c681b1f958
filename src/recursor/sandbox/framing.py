"""Length-prefixed JSON frames over a pair of file descriptors.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. JSON and not pickle:
the host must never unpickle what untrusted code in the worker sends. Strings are written with
``surrogatepass`` so any Python str crosses intact (``json.loads`` of bytes decodes the same way).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from recursor.errors import ProtocolError

_HEADER = struct.Struct(">I")
#: a frame larger than this is a protocol error (a sub-call prompt of 50 MB is fine)
MAX_FRAME = 1 << 30


def encode(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body):,} bytes exceeds the {MAX_FRAME:,}-byte limit")
    return body


class Channel:
    """Blocking frame I/O on raw fds (no buffering layer: frames are read exactly)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd

    def send(self, obj: dict[str, Any]) -> None:
        body = encode(obj)
        self._write_all(_HEADER.pack(len(body)))
        self._write_all(body)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.write_fd, view)
            view = view[n:]

    def recv(self) -> dict[str, Any] | None:
        """The next frame, or None at end of stream."""
        header = self._read_exact(_HEADER.size)
        if header is None:
            return None
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ProtocolError(f"incoming frame of {size:,} bytes exceeds the limit")
        body = self._read_exact(size) if size else b""
        if body is None:
            raise ProtocolError("stream ended inside a frame")
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise ProtocolError(f"malformed frame: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
            raise ProtocolError("a frame must be a JSON object with an 'op'")
        return obj

    def _read_exact(self, n: int) -> bytes | bytearray | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = os.readv(self.read_fd, [view[got:]])
            if k == 0:
                if got == 0:
                    return None
                raise ProtocolError("stream ended inside a frame")
            got += k
        return buf

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
