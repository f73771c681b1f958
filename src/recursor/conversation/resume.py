"""Rebuild a session's REPL from its record: the recorded root cells run again, in order, and
each sub-call is answered from the recorded answers (by the sha256 of its prompt). No model is
called.

A cell's output is compared with the recording, under the same output budget the engine gave it.
Where it differs, or where the cell read something a replay cannot reproduce (the clock,
randomness, the network), the names it assigns are reported as possibly stale, and the next
ask's root is told so: nothing is silently different.
"""

from __future__ import annotations

import ast
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from recursor.conversation.record import AskRecord, CellRecord
from recursor.sandbox.base import Session, SubcallRequest, SubcallResponse
from recursor.trace.events import prompt_digest

#: the least output budget a cell gets (the engine's floor)
_MIN_CELL_OUTPUT = 200
#: code that reads what a replay cannot reproduce
_UNREPEATABLE = re.compile(
    r"\b(time\.(time|monotonic|perf_counter|localtime|gmtime|ctime)|datetime\.(now|today|utcnow)"
    r"|date\.today|random\.|uuid\.uuid[14]|os\.urandom|secrets\.|urllib|requests\.|socket\.)"
)


class RecordedAnswers:
    """Answers sub-calls from the recorded replies, in the order they were given per prompt; a
    prompt the record does not hold gets an error (the cell's output then differs)."""

    def __init__(self, asks: list[AskRecord]) -> None:
        self._by_prompt: dict[tuple[str, str], deque[tuple[str, str | None]]] = defaultdict(deque)
        for ask in asks:
            for sub in ask.subcalls:
                self._by_prompt[(sub.kind, sub.prompt_sha256)].append((sub.reply, sub.error))
        self._lock = threading.Lock()
        self.misses = 0

    def __call__(self, request: SubcallRequest) -> SubcallResponse:
        results: list[str | None] = []
        errors: list[str | None] = []
        types: list[str | None] = []
        with self._lock:
            for prompt in request.prompts:
                queue = self._by_prompt.get((request.kind, prompt_digest(prompt)))
                if not queue:
                    self.misses += 1
                    results.append(None)
                    errors.append("the saved session holds no answer to this sub-call")
                    types.append("SubcallError")
                    continue
                reply, error = queue.popleft()
                if error is None:
                    results.append(reply)
                    errors.append(None)
                    types.append(None)
                else:
                    # the broker records "ClassName: message"; the REPL raises ClassName again
                    name, sep, message = error.partition(": ")
                    results.append(None)
                    errors.append(message if sep else error)
                    types.append(name if sep else "SubcallError")
        return SubcallResponse(results, errors, types)


@dataclass(slots=True)
class CellReplay:
    ask: int
    iteration: int
    index: int
    #: "same", "differs" (output not as recorded) or "unrepeatable" (read the clock, ...)
    status: str
    #: the names the cell assigns (those that may be stale when status is not "same")
    names: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass(slots=True)
class ResumeReport:
    """What a resume found: every cell replayed, and the names that may be stale."""

    cells: list[CellReplay] = field(default_factory=list)
    #: sub-calls answered from the record (no model calls are ever made by a resume)
    answered: int = 0
    missed: int = 0
    elapsed_s: float = 0.0

    @property
    def stale(self) -> list[str]:
        names: set[str] = set()
        for c in self.cells:
            if c.status != "same":
                names.update(c.names)
        return sorted(names)

    @property
    def ok(self) -> bool:
        return all(c.status == "same" for c in self.cells)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stale": self.stale,
            "cells": [
                {"ask": c.ask, "iteration": c.iteration, "index": c.index, "status": c.status}
                for c in self.cells
            ],
            "answered": self.answered,
            "missed": self.missed,
            "elapsed_s": self.elapsed_s,
        }


def assigned_names(code: str) -> list[str]:
    """The top-level names a cell binds (assignments, loops, imports, defs, ``with ... as``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Global):
            names.update(node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.attr in ("append", "extend", "update", "add", "insert", "pop", "clear")
        ):
            names.add(node.func.value.id)  # a container changed in place
    return sorted(n for n in names if not n.startswith("_"))


def replay_ask(
    session: Session, ask_no: int, ask: AskRecord, cell_timeout_s: float | None
) -> list[CellReplay]:
    """Run ``ask``'s recorded cells again in ``session`` and compare their output."""
    out: list[CellReplay] = []
    budget, turn = ask.max_output_chars, None
    for cell in ask.cells:
        if cell.iteration != turn:  # the engine's budget is per turn, shared by its cells
            budget, turn = ask.max_output_chars, cell.iteration
        limit = max(budget, _MIN_CELL_OUTPUT)
        deadline = None if cell_timeout_s is None else time.monotonic() + cell_timeout_s
        got = session.run(cell.code, deadline=deadline, output_limit=limit)
        budget -= len(cell.stdout) + len(cell.stderr) + len(cell.error or "")
        out.append(_compare(ask_no, cell, got.stdout, got.stderr, got.error))
    return out


def _compare(
    ask_no: int, cell: CellRecord, stdout: str, stderr: str, error: str | None
) -> CellReplay:
    names = assigned_names(cell.code)
    differs = [
        what
        for what, a, b in (
            ("stdout", cell.stdout, stdout),
            ("stderr", cell.stderr, stderr),
            ("error", cell.error, error),
        )
        if a != b
    ]
    if differs:
        status, detail = "differs", "its " + " and ".join(differs) + " differed from the recording"
    elif cell.timed_out or cell.lost_state or _UNREPEATABLE.search(cell.code):
        status, detail = "unrepeatable", "it reads the clock, randomness or the network"
    else:
        status, detail = "same", ""
    return CellReplay(ask_no, cell.iteration, cell.index, status, names, detail)
