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

Reading never trusts the other side, and what it allocates follows what was sent and what it
will decode to, never what a header claims: the JSON part is bounded by ``max_json`` (far below
the frame cap: big strings are blobs) before anything is read; bodies are read in chunks of at
most 1 MiB into a growing buffer; the JSON's values are counted (strings blanked, then commas
and brackets counted: an upper bound) before ``json.loads`` turns 4 MB of ``[0,0,...]`` into
hundreds of MB of objects; and the blobs' decoded size (bytes x the widest character seen so
far: a str with one emoji takes 4 bytes a character) must fit ``max_frame``. Paths must lead to
a ``null`` that is there, and anything malformed is a :class:`ProtocolError` (a SandboxError).
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any

from recursor.errors import ProtocolError

_HEADER = struct.Struct(">I")
#: the default bound on one frame, JSON and blobs together (a sub-call prompt of 50 MB is fine)
MAX_FRAME = 1 << 30
#: the default bound on a frame's JSON part: a sub-call's big prompts are blobs, so the JSON
#: holds only short strings and the frame's shape
MAX_JSON = 8 << 20
#: the default bound on the values (containers and scalars) one frame's JSON may hold
MAX_ITEMS = 250_000
#: how much one read asks for: memory follows the bytes that arrive, not the header's claim
_CHUNK = 1 << 20
#: a JSON string (the unrolled form: linear on any input)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
#: UTF-8 lead bytes of characters >= U+0100 (a str of them takes 2 bytes a character) and
#: >= U+10000 (4 bytes a character)
_WIDE = re.compile(rb"[\xc4-\xef]")
_ASTRAL = re.compile(rb"[\xf0-\xf4]")
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


def _count_items(body: bytes | bytearray) -> int:
    """An upper bound on the values the JSON ``body`` holds, without building them."""
    shape = _STRING.sub(b"0", body)
    return 1 + shape.count(b",") + shape.count(b"[") + shape.count(b"{")


def _width(data: bytes | bytearray) -> int:
    """Bytes a character of ``data`` decoded to str takes at most (1, 2 or 4)."""
    if _ASTRAL.search(data):
        return 4
    return 2 if _WIDE.search(data) else 1


class Channel:
    """Blocking frame I/O on raw fds (no buffering layer: frames are read exactly).

    ``max_frame`` bounds what :meth:`recv` accepts and so what the other side can make this
    one allocate for a frame (the host sets it from ``WorkerLimits.frame_mb``): the bytes of a
    frame, and the decoded size of its blobs. ``max_json`` and ``max_items`` bound its JSON
    part (see the module's docstring). :attr:`last_size` is the byte size of the frame
    :meth:`recv` returned last (the host's queue of frames is bounded by it).
    """

    def __init__(
        self,
        read_fd: int,
        write_fd: int,
        *,
        max_frame: int = MAX_FRAME,
        max_json: int = MAX_JSON,
        max_items: int = MAX_ITEMS,
    ) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._close_lock = threading.Lock()
        self.max_frame = max_frame
        self.max_json = min(max_json, max_frame)
        self.max_items = max_items
        self.last_size = 0

    def send(self, obj: dict[str, Any]) -> None:
        self._write_all(encode(obj, self.max_frame))

    def _write_all(self, parts: list[bytes]) -> None:
        write_parts(self.write_fd, parts)

    def recv(self) -> dict[str, Any] | None:
        """The next frame, or None at end of stream."""
        header = self._read_exact(_HEADER.size)
        if header is None:
            return None
        (size,) = _HEADER.unpack(header)
        if size > self.max_json:
            raise ProtocolError(
                f"incoming frame of {size:,} bytes exceeds the limit ({self.max_json:,} "
                "bytes of JSON)"
            )
        body = self._read_exact(size) if size else b""
        if body is None:
            raise ProtocolError("stream ended inside a frame")
        items = _count_items(body)
        if items > self.max_items:
            raise ProtocolError(
                f"incoming frame holds ~{items:,} JSON values, over the {self.max_items:,} limit"
            )
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise ProtocolError(f"malformed frame: {exc}") from exc
        del body
        if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
            raise ProtocolError("a frame must be a JSON object with an 'op'")
        specs = _blob_specs(obj, self.max_frame - size)
        total = sum(n for _, n in specs)
        if specs:
            self._attach(obj, specs, total)
        self.last_size = size + total
        return obj

    def _attach(self, obj: dict[str, Any], specs: list[tuple[_Path, int]], total: int) -> None:
        widest = [1]

        def decoded_fits(chunk: bytes, got: int) -> None:
            widest[0] = max(widest[0], _width(chunk))
            if got * widest[0] > self.max_frame:
                raise ProtocolError(
                    f"the frame's blobs decode to {got * widest[0]:,}+ bytes of text "
                    f"({widest[0]} a character), over the {self.max_frame:,}-byte limit"
                )

        data = self._read_exact(total, decoded_fits) if total else b""
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

    def _read_exact(
        self, n: int, check: Callable[[bytes, int], None] | None = None
    ) -> bytes | bytearray | None:
        """``n`` bytes, read in chunks into a buffer that grows as they arrive (a header's
        claim allocates nothing); ``check(chunk, bytes so far)`` may refuse on the way."""
        buf = bytearray()
        while len(buf) < n:
            chunk = os.read(self.read_fd, min(_CHUNK, n - len(buf)))
            if not chunk:
                if not buf:
                    return None
                raise ProtocolError("stream ended inside a frame")
            buf += chunk
            if check is not None:
                check(chunk, len(buf))
        return buf

    def close(self) -> None:
        """Close both fds, once. A second close must never reach ``os.close``: by then the
        numbers may belong to another worker's fresh pipes (launches run on other threads),
        whose worker would then find its channel closed, or whose frames a reader here would
        steal. After close, the numbers are -1, so a late read or write fails with EBADF."""
        with self._close_lock:
            fds = (self.read_fd, self.write_fd)
            self.read_fd = self.write_fd = -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


def write_parts(fd: int, parts: list[bytes]) -> None:
    """Write a frame's buffers (from :func:`encode`) to ``fd`` in full (blocking)."""
    views = [memoryview(p) for p in parts if p]
    while views:
        n = os.writev(fd, views[:_IOV_BATCH])
        while n and n >= len(views[0]):
            n -= len(views.pop(0))
        if n:
            views[0] = views[0][n:]
