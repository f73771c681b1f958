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
class HistoryCompacted(Event):
    """The root's older turns were replaced by notes the model wrote (recursor.compaction)."""

    type: ClassVar[str] = "history_compacted"
    iteration: int
    model: str
    #: the turns (root replies, from 1) the notes now stand for
    first_turn: int
    last_turn: int
    #: the estimated input tokens of the history before and after
    tokens_before: int
    tokens_after: int
    summary: str
    usage: dict[str, Any]
    latency_s: float


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


@dataclass(frozen=True, slots=True)
class ModelDelta(Event):
    """A piece of a model's reply as it is generated (live only: streams, never a trace file).

    A backend that cannot stream sends its whole reply as one delta when the call ends."""

    type: ClassVar[str] = "model_delta"
    iteration: int
    text: str


@dataclass(frozen=True, slots=True)
class CellStarted(Event):
    """A cell is about to run (live only; its end is the recorded :class:`CellRan`)."""

    type: ClassVar[str] = "cell_started"
    iteration: int
    index: int
    code: str


@dataclass(frozen=True, slots=True)
class BackgroundStarted(Event):
    """Model code started sub-calls in the background (``llm_query_async`` and the like)."""

    type: ClassVar[str] = "background_started"
    kind: str
    handles: list[int]


@dataclass(frozen=True, slots=True)
class BackgroundFinished(Event):
    """A background sub-call ended: answered, failed, or cancelled with its run."""

    type: ClassVar[str] = "background_finished"
    handle: int
    error: str | None
    cancelled: bool = False


#: events that are only ever seen live (a stream's listener), never kept in a trace
LIVE_ONLY: tuple[type[Event], ...] = (ModelDelta, CellStarted)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        RunStarted,
        ModelCalled,
        CellRan,
        SubcallMade,
        ToolCalled,
        HistoryCompacted,
        LimitHit,
        RunFinished,
        ModelDelta,
        CellStarted,
        BackgroundStarted,
        BackgroundFinished,
    )
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
