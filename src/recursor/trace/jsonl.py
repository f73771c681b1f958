"""Compact JSON Lines traces: one event a line, written while the run goes.

Why the file stays small whatever the context's size:

* events never hold the context, only its metadata (see :mod:`recursor.trace.events`);
* a model call records only the messages it added (``new_messages``), never the conversation
  again, so n iterations cost O(n) lines, not O(n²);
* the context itself is written only when asked (``store_context=True``), once per file, as a
  content-addressed ``context_blob`` record keyed by the sha256 of its JSON form; runs refer to
  it by ``RunStarted.context_sha256`` (simonw/llm stores its "novel" the same way).

Every line passes through :func:`recursor.trace.redact.scrub` before it is written, so API keys
do not reach the file (the blob, which is the caller's own data, is written as given).

Every line is strict JSON: ``NaN`` and ``Infinity`` are not JSON (browsers' ``JSON.parse`` and
most readers refuse them), so a non-finite number (a NaN cost, a forged duration) is written
as ``null`` (:func:`dumps`).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from recursor.trace.events import Event
from recursor.trace.redact import scrub, secrets

if TYPE_CHECKING:
    from recursor.context import Context

BLOB_TYPE = "context_blob"
_BLOB_PREFIX = '{"type":"context_blob","sha256":"'


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes ``NaN`` or ``Infinity``: such numbers become null.

    The copy that replaces them is made only when encoding failed (the slow path): a clean
    value, the usual case, is encoded once and not walked.
    """
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, **kwargs)


def encode_event(event: Event, secret_values: list[str] | None = None) -> str:
    """One event as one compact JSON line (no newline), with secrets masked."""
    line = dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return scrub(line, secret_values)


def _open(path: Path, mode: str) -> IO[str]:
    # "backslashreplace": a lone surrogate (from bytes decoded with surrogateescape) is written
    # as the JSON escape \udcxx, which reads back as the same string, instead of failing.
    return path.open(mode, encoding="utf-8", errors="backslashreplace", newline="\n")


def write_events(path: str | Path, events: Iterable[Event]) -> Path:
    """Write events as a trace file (what ``Trace.save`` does)."""
    p = Path(path)
    values = secrets()
    with _open(p, "w") as f:
        for event in events:
            f.write(encode_event(event, values) + "\n")
    return p


def iter_records(path: str | Path, *, blobs: bool = False) -> Iterator[dict[str, Any]]:
    """The JSON records of a trace file; context blobs are skipped unless ``blobs``."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            if line.startswith(_BLOB_PREFIX) and not blobs:
                continue  # not parsed: it may be 100 MB
            yield json.loads(line)


def read_context_blob(path: str | Path, sha256: str) -> tuple[str, Any] | None:
    """``(kind, value)`` of the blob stored under ``sha256`` in a trace file, or None.

    ``kind`` is "text" (value: str) or "json" (value: the list or dict given as context).
    """
    prefix = _BLOB_PREFIX + sha256 + '"'
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.startswith(prefix):
                record = json.loads(line)
                return str(record["kind"]), record["data"]
    return None


def context_blob(value: Any) -> tuple[str, str]:
    """``(sha256, line)``: the blob record of a context value, and its key.

    The key is the sha256 of the JSON encoding of the value (the bytes the record holds), so
    the same context always gets the same key and is never encoded twice.
    """
    kind = "text" if isinstance(value, str) else "json"
    payload = dumps(value, ensure_ascii=False, default=str)
    digest = hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()
    chars = len(value) if isinstance(value, str) else len(payload)
    head = f'{_BLOB_PREFIX}{digest}","kind":"{kind}","chars":{chars},"data":'
    return digest, head + payload + "}\n"


class JsonlSink:
    """A trace sink that appends each event to a JSONL file as it happens.

    The file is opened once and flushed after every event, so a crash loses nothing already
    done (flushed to the OS; no fsync, which would cost a disk round-trip per event). It is
    safe to share between threads and between runs: give the same sink to several ``RLM``
    objects and their events interleave line by line, never inside a line.

    ``store_context=True`` writes each root run's context once, by content hash, so
    ``recursor replay`` needs no ``--context``. Child runs' contexts are not stored: they are
    values the parent's code derived from its own context, and a replay derives them again.
    """

    def __init__(
        self, path: str | Path, *, store_context: bool = False, append: bool = False
    ) -> None:
        self.path = Path(path)
        self.store_context_blobs = store_context
        self._lock = threading.Lock()
        self._file: IO[str] | None = _open(self.path, "a" if append else "w")
        self._stored: set[str] = set()
        # Close the file if the sink is dropped unclosed (everything was flushed already).
        self._finalizer = weakref.finalize(self, self._file.close)

    def __call__(self, event: Event) -> None:
        line = encode_event(event) + "\n"
        with self._lock:
            if self._file is None:
                raise ValueError(f"JsonlSink({str(self.path)!r}) is closed")
            self._file.write(line)
            self._file.flush()

    def store_context(self, context: Context, depth: int) -> str | None:
        """Write ``context`` once as a blob; its key, or None when this sink stores none."""
        if not self.store_context_blobs or depth > 0:
            return None
        value, _ = context.value()
        digest, line = context_blob(value)
        with self._lock:
            if self._file is None:
                raise ValueError(f"JsonlSink({str(self.path)!r}) is closed")
            if digest not in self._stored:
                self._file.write(line)
                self._file.flush()
                self._stored.add(digest)
        return digest

    def flush(self) -> None:
        """Every line is flushed as it is written; this is for symmetry with other sinks."""
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        self._finalizer.detach()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
