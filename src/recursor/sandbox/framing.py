"""Length-prefixed JSON frames, with big strings attached as raw UTF-8, over a pair of fds.

A frame is a 4-byte big-endian length, that many bytes of UTF-8 JSON, then the frame's blobs.
JSON and not pickle: the host must never unpickle what untrusted code in the worker sends.
Strings are written with ``surrogatepass`` so any Python str crosses intact.

Blobs: a string of ``BLOB_MIN`` characters or more (a 10 MB prompt, a big sub-call answer) is
not put in the JSON, where escaping it on one side and scanning it on the other cost ~8 ms per
MB; its place holds ``null`` and the frame's ``"_blobs"`` lists ``[path, nbytes]`` for each, in
order, the path being the dict keys and list indexes that lead to it. The blob bytes follow the
JSON, written straight from the encoded string (no concatenation) and decoded from one buffer.
A frame without big strings has no ``"_blobs"`` and is the plain JSON frame it always was.

Reading never trusts the other side: the JSON part and the whole frame are bounded by the
channel's ``max_frame`` before anything that size is allocated, paths must lead to a ``null``
that is there, and anything malformed is a :class:`ProtocolError` (a SandboxError).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from typing import Any

from recursor.errors import ProtocolError

_HEADER = struct.Struct(">I")
#: the default bound on one frame, JSON and blobs together (a sub-call prompt of 50 MB is fine)
MAX_FRAME = 1 << 30
#: strings at least this long travel as blobs (below it, JSON is as cheap and one write fewer)
BLOB_MIN = 1 << 14
#: the frame key that lists the blobs; frames are our own protocol objects, never user data
BLOBS_KEY = "_blobs"
#: how many iovecs one writev gets (IOV_MAX is 1024 on Linux)
_IOV_BATCH = 512

_Path = list[str | int]


def _lift(obj: Any, path: _Path, out: list[tuple[_Path, bytes]]) -> Any:
    """``obj`` with its big strings replaced by None (appended to ``out`` with their paths).

    Containers are copied only where something was lifted out of them, so the caller's
    objects are never changed and a frame without big strings costs one walk. Only str-keyed
    dict entries are walked: JSON turns other keys into strings, and a path must name the key
    the reader will see (values under such keys just stay in the JSON).
    """
    if isinstance(obj, str):
        if len(obj) >= BLOB_MIN:
            out.append((list(path), obj.encode("utf-8", "surrogatepass")))
            return None
        return obj
    if isinstance(obj, dict):
        changed = _lift_children(((k, v) for k, v in obj.items() if isinstance(k, str)), path, out)
        return {**obj, **changed} if changed else obj
    if isinstance(obj, list | tuple):
        changed = _lift_children(enumerate(obj), path, out)
        if not changed:
            return obj
        items = list(obj)
        for index, lifted in changed.items():
            items[int(index)] = lifted
        return items
    return obj


def _lift_children(
    pairs: Iterable[tuple[str | int, Any]], path: _Path, out: list[tuple[_Path, bytes]]
) -> dict[str | int, Any]:
    """The children (key or index, value) of one container that lifting changed."""
    changed: dict[str | int, Any] = {}
    for key, value in pairs:
        if not isinstance(value, str | dict | list | tuple):
            continue  # nothing below it can be a big string
        path.append(key)
        lifted = _lift(value, path, out)
        path.pop()
        if lifted is not value:
            changed[key] = lifted
    return changed


def encode(obj: dict[str, Any], max_frame: int = MAX_FRAME) -> list[bytes]:
    """The buffers of one frame, header first, ready for ``writev``."""
    blobs: list[tuple[_Path, bytes]] = []
    lifted = _lift(obj, [], blobs)
    if blobs:
        lifted = dict(lifted)
        lifted[BLOBS_KEY] = [[path, len(data)] for path, data in blobs]
    body = json.dumps(lifted, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    size = len(body) + sum(len(data) for _, data in blobs)
    if size > max_frame:
        raise ProtocolError(f"frame of {size:,} bytes exceeds the {max_frame:,}-byte limit")
    return [_HEADER.pack(len(body)), body, *(data for _, data in blobs)]


def _blob_specs(obj: dict[str, Any], room: int) -> list[tuple[_Path, int]]:
    """The validated ``"_blobs"`` of a frame: shapes, and sizes that fit in ``room`` bytes."""
    specs = obj.pop(BLOBS_KEY, None)
    if specs is None:
        return []
    if not isinstance(specs, list):
        raise ProtocolError(f"{BLOBS_KEY!r} must be a list")
    out: list[tuple[_Path, int]] = []
    total = 0
    for spec in specs:
        ok = isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], list)
        size = spec[1] if ok else None
        if not ok or type(size) is not int or size < 0 or not spec[0]:
            raise ProtocolError(f"malformed blob entry: {str(spec)[:200]}")
        total += size
        if total > room:
            raise ProtocolError(f"the frame's blobs ({total:,}+ bytes) exceed the frame limit")
        out.append((spec[0], size))
    return out


def _place(obj: dict[str, Any], path: _Path, value: str) -> None:
    """Put ``value`` where ``path`` leads in ``obj``: the place must hold the null it left."""
    node: Any = obj
    for step in path[:-1]:
        node = _step(node, step)
    last = path[-1]
    if _step(node, last) is not None:
        raise ProtocolError(f"blob path {str(path)[:200]} does not lead to a placeholder")
    node[last] = value


def _step(node: Any, step: Any) -> Any:
    if isinstance(node, dict) and isinstance(step, str) and step in node:
        return node[step]
    if isinstance(node, list) and type(step) is int and 0 <= step < len(node):
        return node[step]
    raise ProtocolError(f"blob path step {str(step)[:100]!r} leads nowhere")


class Channel:
    """Blocking frame I/O on raw fds (no buffering layer: frames are read exactly).

    ``max_frame`` bounds what :meth:`recv` accepts and so what the other side can make this
    one allocate for a frame (the host sets it from ``WorkerLimits.frame_mb``).
    """

    def __init__(self, read_fd: int, write_fd: int, *, max_frame: int = MAX_FRAME) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_frame = max_frame

    def send(self, obj: dict[str, Any]) -> None:
        self._write_all(encode(obj, self.max_frame))

    def _write_all(self, parts: list[bytes]) -> None:
        views = [memoryview(p) for p in parts if p]
        while views:
            n = os.writev(self.write_fd, views[:_IOV_BATCH])
            while n and n >= len(views[0]):
                n -= len(views.pop(0))
            if n:
                views[0] = views[0][n:]

    def recv(self) -> dict[str, Any] | None:
        """The next frame, or None at end of stream."""
        header = self._read_exact(_HEADER.size)
        if header is None:
            return None
        (size,) = _HEADER.unpack(header)
        if size > self.max_frame:
            raise ProtocolError(f"incoming frame of {size:,} bytes exceeds the limit")
        body = self._read_exact(size) if size else b""
        if body is None:
            raise ProtocolError("stream ended inside a frame")
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise ProtocolError(f"malformed frame: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
            raise ProtocolError("a frame must be a JSON object with an 'op'")
        specs = _blob_specs(obj, self.max_frame - size)
        if specs:
            self._attach(obj, specs)
        return obj

    def _attach(self, obj: dict[str, Any], specs: list[tuple[_Path, int]]) -> None:
        total = sum(n for _, n in specs)
        data = self._read_exact(total) if total else b""
        if data is None:
            raise ProtocolError("stream ended inside a frame")
        view = memoryview(data)
        at = 0
        for path, n in specs:
            try:
                text = str(view[at : at + n], "utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"a blob is not UTF-8: {exc}") from exc
            at += n
            _place(obj, path, text)

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
