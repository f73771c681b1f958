"""Typed events of a run tree.

Every event names the run it belongs to (``run_id``); a child run names its parent. Messages
are recorded as deltas (only what a model call added to the conversation), and the context is
never recorded, only its metadata, so a trace stays small whatever the context's size.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

#: characters of a sub-call prompt kept in the trace (prompts often carry context chunks)
PROMPT_PREVIEW_CHARS = 2_000


def prompt_digest(prompt: str) -> str:
    """The sha256 of a sub-call prompt: how a replay finds the recorded reply to a prompt."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()


def prompt_preview(prompt: str) -> str:
    """The head of a sub-call prompt, enough to read in a viewer without re-storing chunks."""
    if len(prompt) <= PROMPT_PREVIEW_CHARS:
        return prompt
    return prompt[:PROMPT_PREVIEW_CHARS] + f" … [{len(prompt) - PROMPT_PREVIEW_CHARS:,} more chars]"


@dataclass(frozen=True, slots=True)
class Event:
    type: ClassVar[str] = "event"
    run_id: str
    t: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    parent_id: str | None
    depth: int
    query: str
    context_meta: dict[str, Any]
    config: dict[str, Any]
    #: the key of the context blob a sink stored (``JsonlSink(store_context=True)``), else None
    context_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class ModelCalled(Event):
    type: ClassVar[str] = "model_called"
    iteration: int
    model: str
    #: the messages this call added to the conversation (the first call: system + query)
    new_messages: list[dict[str, str]]
    reply: str
    usage: dict[str, Any]
    latency_s: float


@dataclass(frozen=True, slots=True)
class CellRan(Event):
    type: ClassVar[str] = "cell_ran"
    iteration: int
    index: int
    code: str
    stdout: str
    stderr: str
    error: str | None
    duration_s: float
    timed_out: bool
    lost_state: bool
    final: str | None


@dataclass(frozen=True, slots=True)
class SubcallMade(Event):
    type: ClassVar[str] = "subcall"
    depth: int
    kind: str
    model: str
    index: int
    prompt_chars: int
    reply_chars: int
    error: str | None
    usage: dict[str, Any]
    latency_s: float
    #: for rlm_query: the child run's id
    child_run_id: str | None = None
    #: the reply text (a child's answer for rlm_query): a replay answers from it
    reply: str = ""
    #: the head of the prompt (:func:`prompt_preview`) and the sha256 of all of it
    prompt: str = ""
    prompt_sha256: str = ""
    #: answered from the broker's cache (or by an identical call in flight): no model call made
    cached: bool = False
    #: model calls made for this sub-call (more than 1 when the broker retried)
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class ToolCalled(Event):
    """Model code called one of the host's tools (``RLM(tools=...)``)."""

    type: ClassVar[str] = "tool_called"
    depth: int
    name: str
    #: the arguments and the result as JSON, their heads only (:func:`prompt_preview`)
    arguments: str
    result: str
    #: ``ToolError: message`` (or ToolTimeout, ToolLimitExceeded, ...) when it failed
    error: str | None
    latency_s: float


@dataclass(frozen=True, slots=True)
class LimitHit(Event):
    type: ClassVar[str] = "limit_hit"
    limit: str
    message: str


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    type: ClassVar[str] = "run_finished"
    answer: str | None
    stop_reason: str
    iterations: int
    usage: dict[str, Any]
    elapsed_s: float
    error: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (RunStarted, ModelCalled, CellRan, SubcallMade, ToolCalled, LimitHit, RunFinished)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """The event a ``to_dict()`` made; fields this version does not know are dropped, so an
    older reader still opens a newer trace (new fields always come with defaults)."""
    d = dict(data)
    kind = d.pop("type", None)
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown trace event type {kind!r}")
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})
