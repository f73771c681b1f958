"""The context: accepted forms, how it reaches a REPL, and the metadata the root model sees.

The root never sees the context itself, only :class:`ContextMeta`. The context is handed to a
REPL once per run: in-process as the object itself, to a worker as one file that the worker
memory-maps (a path the caller gave is used as it is, never copied). Metadata is computed once,
where the value lives. A directory becomes a dict of its text files by relative path, read by
:mod:`recursor.context_dir`, which never follows a link out of it.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from recursor.errors import ContextError

ContextKind = Literal["text", "json"]
#: what ``completion(context=...)`` accepts
ContextInput = str | bytes | os.PathLike[str] | list[Any] | dict[str, Any] | None

_log = logging.getLogger("recursor.context")
_MAX_ITEMS_LISTED = 100
_PREVIEW_CHARS = 600
_PREVIEW_LINES = 8


@dataclass(frozen=True, slots=True)
class ContextMeta:
    """What the root model is told about the context."""

    type: str
    total_chars: int
    n_items: int | None = None
    #: per-item lengths (list items, or dict values), the first 100
    item_lengths: list[int] = field(default_factory=list)
    #: the first 100 keys of a dict context
    keys: list[str] = field(default_factory=list)
    n_lines: int | None = None
    preview: str = ""
    #: invalid UTF-8 was decoded with U+FFFD replacement characters
    decode_errors: bool = False
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextMeta:
        return cls(**data)

    def render(self) -> str:
        """The metadata as the root model reads it."""
        approx = f"~{self.total_chars // 4:,} tokens"
        lines = [f"type: {self.type}", f"total length: {self.total_chars:,} characters ({approx})"]
        if self.n_lines is not None:
            lines.append(f"lines: {self.n_lines:,}")
        if self.n_items is not None:
            lines.append(f"items: {self.n_items:,}")
            if self.keys:
                more = (
                    ""
                    if self.n_items <= len(self.keys)
                    else f" … ({self.n_items - len(self.keys):,} more)"
                )
                lines.append(f"keys: {self.keys!r}{more}")
            if self.item_lengths:
                more = (
                    ""
                    if self.n_items <= len(self.item_lengths)
                    else f" … ({self.n_items - len(self.item_lengths):,} more)"
                )
                lines.append(f"item lengths (characters): {self.item_lengths}{more}")
        if self.decode_errors:
            lines.append(
                "note: the raw bytes were not valid UTF-8; "
                "invalid sequences were replaced by U+FFFD"
            )
        if self.total_chars == 0:
            lines.append("note: the context is empty")
        elif self.preview:
            lines.append(f"preview (first lines):\n{self.preview}")
        return "\n".join(lines)


# -- loading (runs where the REPL lives: the host for inprocess, the worker otherwise) ----------


def decode(data: bytes | memoryview | mmap.mmap) -> tuple[str, bool]:
    """UTF-8 text and whether replacement characters had to be used."""
    try:
        return str(data, "utf-8"), False
    except UnicodeDecodeError:
        return str(data, "utf-8", "replace"), True


def read_text_file(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """Decode a file through mmap: the bytes are mapped, never read into a second buffer."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return "", False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return decode(mm)


def load(path: str, kind: ContextKind) -> tuple[Any, bool]:
    """The context value from its file, and whether decoding replaced bytes."""
    text, bad = read_text_file(path)
    if kind == "text":
        return text, bad
    return json.loads(text), bad


def _preview(text: str) -> str:
    head = text[: _PREVIEW_CHARS * 2]
    lines = head.split("\n")[:_PREVIEW_LINES]
    out = "\n".join(line if len(line) <= 200 else line[:200] + " …" for line in lines)
    return out[:_PREVIEW_CHARS]


def _length(item: Any) -> int:
    return len(item) if isinstance(item, str) else len(json.dumps(item, ensure_ascii=False))


def describe(value: Any, *, decode_errors: bool = False, source: str | None = None) -> ContextMeta:
    """Metadata of a loaded context value (computed once per run)."""
    if isinstance(value, str):
        return ContextMeta(
            type="str",
            total_chars=len(value),
            n_lines=value.count("\n") + 1 if value else 0,
            preview=_preview(value),
            decode_errors=decode_errors,
            source=source,
        )
    if isinstance(value, list):
        lengths = [_length(v) for v in value]
        first = value[0] if value else ""
        return ContextMeta(
            type="list",
            total_chars=sum(lengths),
            n_items=len(value),
            item_lengths=lengths[:_MAX_ITEMS_LISTED],
            preview=_preview(first if isinstance(first, str) else json.dumps(first)),
            decode_errors=decode_errors,
            source=source,
        )
    if isinstance(value, dict):
        lengths = [_length(v) for v in value.values()]
        keys = [str(k) for k in list(value)[:_MAX_ITEMS_LISTED]]
        first = next(iter(value.values()), "")
        return ContextMeta(
            type="dict",
            total_chars=sum(lengths),
            n_items=len(value),
            item_lengths=lengths[:_MAX_ITEMS_LISTED],
            keys=keys,
            preview=_preview(first if isinstance(first, str) else json.dumps(first)),
            decode_errors=decode_errors,
            source=source,
        )
    raise ContextError(f"unsupported context value {type(value).__name__}")


# -- the host side -------------------------------------------------------------------------------


class Context:
    """A caller's context, validated, and shipped to REPLs without per-call copies."""

    def __init__(self, raw: ContextInput) -> None:
        if raw is None:
            raw = ""
        self._source: str | None = None
        if isinstance(raw, os.PathLike) and os.path.isdir(raw):
            raw = self._directory(raw)
        elif isinstance(raw, os.PathLike):
            self._source = f"file {os.fspath(raw)}"
            if not os.path.isfile(raw):
                raise ContextError(f"context path {os.fspath(raw)!r} is not a readable file")
        elif isinstance(raw, list | dict):
            if isinstance(raw, dict) and not all(isinstance(k, str) for k in raw):
                raise ContextError("a dict context must have str keys")
        elif not isinstance(raw, str | bytes | bytearray):
            raise ContextError(
                f"unsupported context type {type(raw).__name__}: "
                "use str, bytes, a path (os.PathLike), a list or a dict"
            )
        self._raw = raw
        self._file: tuple[str, ContextKind] | None = None
        self._tmp: str | None = None

    def _directory(self, path: os.PathLike[str]) -> dict[str, str]:
        """A directory becomes {relative path: text} (context_dir's rules: never leaves it)."""
        from recursor.context_dir import read_directory

        read = read_directory(path)
        for skip in read.skipped:
            _log.warning("context directory %s: skipped %s: %s", path, skip.path, skip.reason)
        self._source = f"directory {os.fspath(path)} ({len(read.docs):,} text files"
        self._source += f", {len(read.skipped):,} entries skipped)" if read.skipped else ")"
        return read.docs

    @property
    def source(self) -> str | None:
        return self._source

    def value(self) -> tuple[Any, bool]:
        """The value a REPL in this process binds to ``context``; whether bytes were replaced."""
        raw = self._raw
        if isinstance(raw, os.PathLike):
            return read_text_file(raw)
        if isinstance(raw, bytes | bytearray):
            return decode(raw)
        return raw, False

    def file(self) -> tuple[str, ContextKind]:
        """A file holding the context, written at most once per Context (a given path is reused)."""
        if self._file is not None:
            return self._file
        raw = self._raw
        if isinstance(raw, os.PathLike):
            given: tuple[str, ContextKind] = (os.fspath(raw), "text")
            self._file = given
            return given
        import tempfile  # host only; the worker never writes a context

        fd, path = tempfile.mkstemp(prefix="recursor-ctx-", suffix=".txt")
        self._tmp = path
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(raw, str):
                    f.write(raw.encode("utf-8", "surrogatepass"))
                elif isinstance(raw, bytes | bytearray):
                    f.write(raw)
                else:
                    try:
                        f.write(json.dumps(raw, ensure_ascii=False).encode("utf-8"))
                    except (TypeError, ValueError) as exc:
                        raise ContextError(
                            f"a list/dict context must be JSON-serializable: {exc}"
                        ) from exc
        except BaseException:
            self.close()
            raise
        written: tuple[str, ContextKind] = (
            path,
            "text" if isinstance(raw, str | bytes | bytearray) else "json",
        )
        self._file = written
        return written

    def close(self) -> None:
        """Remove the temporary file, if one was written."""
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None
            self._file = None
