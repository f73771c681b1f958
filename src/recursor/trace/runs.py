"""A trace's events grouped per run: what replay and SFT export read.

A trace is a flat, time-ordered stream in which the runs of a tree interleave (children run
while their parent's cell waits; batched children run at once). Most readers want it per
run: that run's model calls in order, its cells, its sub-calls, how it ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from recursor.trace.events import (
    CellRan,
    Event,
    LimitHit,
    ModelCalled,
    RunFinished,
    RunStarted,
    SubcallMade,
)


@dataclass(slots=True)
class RunRecord:
    """Everything one run (the root or a child) recorded."""

    started: RunStarted
    calls: list[ModelCalled] = field(default_factory=list)
    cells: list[CellRan] = field(default_factory=list)
    subcalls: list[SubcallMade] = field(default_factory=list)
    limits: list[LimitHit] = field(default_factory=list)
    finished: RunFinished | None = None
    #: child run ids, in start order
    children: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.started.run_id

    @property
    def depth(self) -> int:
        return self.started.depth

    @property
    def parent_id(self) -> str | None:
        return self.started.parent_id

    @property
    def replies(self) -> list[str]:
        return [c.reply for c in self.calls]

    def conversation(self, max_turns: int | None = None) -> list[dict[str, str]]:
        """The root model's chat rebuilt from the deltas: each call's new messages, its reply.

        ``max_turns`` keeps only the first N assistant turns.
        """
        messages: list[dict[str, str]] = []
        for turn, call in enumerate(self.calls):
            if max_turns is not None and turn >= max_turns:
                break
            messages.extend({"role": m["role"], "content": m["content"]} for m in call.new_messages)
            messages.append({"role": "assistant", "content": call.reply})
        return messages


def group_runs(events: Iterable[Event]) -> dict[str, RunRecord]:
    """Runs by id, in the order they started. Events of a run never started are dropped (a
    trace cut at its head cannot say what they belonged to)."""
    runs: dict[str, RunRecord] = {}
    for event in events:
        if isinstance(event, RunStarted):
            runs[event.run_id] = RunRecord(event)
            parent = runs.get(event.parent_id or "")
            if parent is not None:
                parent.children.append(event.run_id)
            continue
        run = runs.get(event.run_id)
        if run is None:
            continue
        if isinstance(event, ModelCalled):
            run.calls.append(event)
        elif isinstance(event, CellRan):
            run.cells.append(event)
        elif isinstance(event, SubcallMade):
            run.subcalls.append(event)
        elif isinstance(event, LimitHit):
            run.limits.append(event)
        elif isinstance(event, RunFinished):
            run.finished = event
    return runs


def root_runs(runs: dict[str, RunRecord]) -> list[RunRecord]:
    """The runs no other run in the trace started (one per ``completion``)."""
    return [r for r in runs.values() if r.parent_id is None or r.parent_id not in runs]


def subtree(runs: dict[str, RunRecord], root_id: str) -> list[RunRecord]:
    """``root_id`` and every run below it, parents before children."""
    out: list[RunRecord] = []
    stack = [root_id]
    while stack:
        run = runs[stack.pop()]
        out.append(run)
        stack.extend(reversed(run.children))
    return out
