"""What a session saves: a JSON file a person can read, written atomically.

The file (format ``recursor.session/1``) is a log, in order, of what changed the REPL: the
contexts it was given (by sha256; the value only with ``include_context=True``, as traces do)
and the asks, each with its question, answer, usage, every root cell (code and what it printed)
and every sub-call answer its cells got. :mod:`recursor.conversation.resume` rebuilds a REPL
from it without a model call.

Writes go to a temporary file in the same directory, are fsynced, then renamed over the target
(``os.replace`` is atomic on POSIX): a process killed mid-save leaves the previous file whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recursor.errors import ResumeError
from recursor.trace.events import CellRan, Event, SubcallMade

FORMAT = "recursor.session/1"
#: the fields of a context's metadata that hold its text
_CONTENT = ("preview", "keys")


def value_sha256(value: Any) -> str:
    """The sha256 of a context's value as a REPL holds it (text, or JSON for a list/dict)."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    else:
        data = json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class CellRecord:
    """A root cell as it ran: its code and what the model was shown."""

    iteration: int
    index: int
    code: str
    stdout: str
    stderr: str
    error: str | None
    final: str | None
    timed_out: bool = False
    lost_state: bool = False


@dataclass(slots=True)
class SubcallRecord:
    """One answer a root cell got (a batch item is one record each)."""

    kind: str
    prompt_sha256: str
    reply: str
    error: str | None


@dataclass(slots=True)
class AskRecord:
    question: str
    answer: str | None
    stop_reason: str
    iterations: int
    run_id: str
    usage: dict[str, Any]
    #: the cell output budget of the ask (a replay cuts output the same way)
    max_output_chars: int
    cells: list[CellRecord] = field(default_factory=list)
    subcalls: list[SubcallRecord] = field(default_factory=list)

    @classmethod
    def from_events(
        cls, question: str, events: list[Event], run_id: str, **fields: Any
    ) -> AskRecord:
        """The record of the root run ``run_id`` from its trace."""
        record = cls(question=question, run_id=run_id, **fields)
        for ev in events:
            if ev.run_id != run_id:
                continue  # a child's cells ran in the child's REPL, not in this one
            if isinstance(ev, CellRan):
                record.cells.append(
                    CellRecord(
                        ev.iteration,
                        ev.index,
                        ev.code,
                        ev.stdout,
                        ev.stderr,
                        ev.error,
                        ev.final,
                        ev.timed_out,
                        ev.lost_state,
                    )
                )
            elif isinstance(ev, SubcallMade):
                record.subcalls.append(SubcallRecord(ev.kind, ev.prompt_sha256, ev.reply, ev.error))
        return record

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AskRecord:
        d = dict(d)
        cells = [CellRecord(**c) for c in d.pop("cells", [])]
        subcalls = [SubcallRecord(**c) for c in d.pop("subcalls", [])]
        return cls(**d, cells=cells, subcalls=subcalls)


@dataclass(slots=True)
class ContextRecord:
    """A context of the session: ``context`` or one added later (``context_1``, ...)."""

    name: str
    sha256: str
    meta: dict[str, Any]
    #: the value itself, only when saved with ``include_context=True``
    value: Any = None
    included: bool = False


Entry = AskRecord | ContextRecord


@dataclass(slots=True)
class SessionRecord:
    entries: list[Entry] = field(default_factory=list)

    @property
    def asks(self) -> list[AskRecord]:
        return [e for e in self.entries if isinstance(e, AskRecord)]

    @property
    def contexts(self) -> list[ContextRecord]:
        return [e for e in self.entries if isinstance(e, ContextRecord)]

    def to_json(self, *, include_context: bool) -> dict[str, Any]:
        log = []
        for e in self.entries:
            if isinstance(e, AskRecord):
                log.append({"kind": "ask", **asdict(e)})
            else:
                d = asdict(e)
                d["included"] = include_context
                if not include_context:
                    # the preview and a dict's keys are the context's own text
                    d.pop("value")
                    d["meta"] = {k: v for k, v in e.meta.items() if k not in _CONTENT}
                log.append({"kind": "context", **d})
        return {"format": FORMAT, "log": log}

    @classmethod
    def from_json(cls, data: Any) -> SessionRecord:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ResumeError(f"not a saved session (format {FORMAT!r} expected)")
        record = cls()
        try:
            for raw in data["log"]:
                item = dict(raw)
                kind = item.pop("kind")
                if kind == "ask":
                    record.entries.append(AskRecord.from_dict(item))
                elif kind == "context":
                    record.entries.append(ContextRecord(**item))
                else:
                    raise ResumeError(f"unknown entry kind {kind!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ResumeError(f"a malformed saved session: {type(exc).__name__}: {exc}") from None
        if not record.contexts or record.contexts[0].name != "context":
            raise ResumeError("a saved session must start with its context")
        return record


def save(record: SessionRecord, path: str | os.PathLike[str], *, include_context: bool) -> Path:
    """Write ``record`` to ``path`` atomically (temporary file, fsync, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record.to_json(include_context=include_context), f, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def load(path: str | os.PathLike[str]) -> SessionRecord:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ResumeError(f"cannot read saved session {os.fspath(path)!r}: {exc}") from None
    return SessionRecord.from_json(data)
