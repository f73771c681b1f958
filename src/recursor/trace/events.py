"""Typed events of a run tree.

Every event names the run it belongs to (``run_id``); a child run names its parent. Messages
are recorded as deltas (only what a model call added to the conversation), and the context is
never recorded, only its metadata, so a trace stays small whatever the context's size.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


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
    cls.type: cls for cls in (RunStarted, ModelCalled, CellRan, SubcallMade, LimitHit, RunFinished)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    d = dict(data)
    cls = EVENT_TYPES[d.pop("type")]
    return cls(**d)
