"""Replay a recorded trajectory: the recorded model replies, a real REPL, no model calls.

Every model of the replayed RLM is a :class:`ReplayLM` that answers from the trace:

* the root's calls are pinned to the recorded root run: its n-th call gets the n-th reply;
* a child run's calls are matched to a recorded child by their first two messages (system
  prompt and query, which hold the child's query and context metadata), falling back to the
  query alone when the prompt templates changed since the recording; several identical
  children are told apart by the conversation so far;
* a plain sub-call (``llm_query``, ``rlm_query`` at the last level) is answered by the
  sha256 of its prompt (``SubcallMade.prompt_sha256``); a recorded failure is raised again.

The cells run for real, in the recorded environment with the recorded limits, and each cell's
stdout, stderr, error and final value is compared with the recording. What differs is
nondeterminism the trajectory depends on (time, randomness, the network, a changed
environment or library) and is what :func:`replay` reports.
"""

from __future__ import annotations

import builtins
import dataclasses
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recursor import errors
from recursor.context import ContextInput
from recursor.errors import ContextError, LMError, ReplayExhausted, RunAborted
from recursor.limits import Limits
from recursor.lm.base import Completion, LMProfile, Message, SyncLM
from recursor.lm.profile import default_profile
from recursor.trace import Trace
from recursor.trace.events import CellRan, Event, SubcallMade, prompt_digest
from recursor.trace.jsonl import read_context_blob
from recursor.trace.redact import scrub
from recursor.trace.runs import RunRecord, group_runs, root_runs, subtree
from recursor.usage import Usage

_USAGE_FIELDS = {f.name for f in dataclasses.fields(Usage)}
#: the CellRan fields a replay compares
COMPARED = ("stdout", "stderr", "error", "final")


class ReplayMiss(LMError):
    """The replay asked for a sub-call reply the trace does not hold."""


def _usage(d: dict[str, Any]) -> Usage:
    return Usage(**{k: v for k, v in d.items() if k in _USAGE_FIELDS})


def _error_class(name: str) -> type[Exception] | None:
    cls = getattr(errors, name, None) or getattr(builtins, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, Exception) else None


def _reraise(recorded: str) -> Exception:
    """The exception that makes the broker record the same error text again.

    The broker writes ``"ClassName: message"``; raising ClassName(message) reproduces it.
    """
    name, sep, message = recorded.partition(": ")
    cls = _error_class(name) if sep else None
    if cls is None:
        return LMError(recorded)
    try:
        return cls(message)
    except Exception:
        return LMError(recorded)


class ReplayBook:
    """The recorded replies of one root run's tree, looked up by what a model is sent."""

    def __init__(self, runs: list[RunRecord]) -> None:
        self.root = runs[0]
        self.children = runs[1:]
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        #: what the replay asked for and the trace did not hold
        self.misses: list[str] = []
        self._subcalls: dict[str, deque[SubcallMade]] = {}
        for run in runs:
            for sub in run.subcalls:
                if sub.child_run_id is None and sub.prompt_sha256:
                    self._subcalls.setdefault(sub.prompt_sha256, deque()).append(sub)

    # -- child runs -------------------------------------------------------------------------
    def _candidates(self, messages: list[Message]) -> list[RunRecord]:
        if len(messages) < 2:
            return []
        head = [(m["role"], m["content"]) for m in messages[:2]]
        exact = [
            r
            for r in self.children
            if r.calls and [(m["role"], m["content"]) for m in r.calls[0].new_messages[:2]] == head
        ]
        if exact:
            return exact
        user = messages[1]["content"]
        return [r for r in self.children if r.calls and r.started.query in user]

    def match(self, messages: list[Message]) -> RunRecord | None:
        """The recorded child run a conversation replays."""
        candidates = self._candidates(messages)
        if not candidates:
            return None
        with self._lock:
            if len(messages) <= 2:
                # A new conversation: the first candidate not yet replayed.
                chosen = next((r for r in candidates if r.run_id not in self._claimed), None)
                chosen = chosen or candidates[0]
                self._claimed.add(chosen.run_id)
                return chosen

        def agreement(run: RunRecord) -> int:
            recorded = run.conversation()
            n = 0
            for got, want in zip(messages, recorded, strict=False):
                if got["role"] != want["role"] or got["content"] != want["content"]:
                    break
                n += 1
            return n

        return max(candidates, key=agreement)

    def miss(self, message: str) -> ReplayMiss:
        """Note a miss; the error to raise (an LMError, so the run goes on and shows it)."""
        self.misses.append(message)
        return ReplayMiss(f"replay: {message}")

    # -- plain sub-calls ---------------------------------------------------------------------
    def subcall(self, prompt: str) -> SubcallMade:
        digest = prompt_digest(prompt)
        with self._lock:
            queue = self._subcalls.get(digest)
            if not queue:
                raise self.miss(
                    f"no recorded reply for a sub-call prompt "
                    f"(sha256 {digest[:12]}, {len(prompt):,} chars)"
                )
            # Answered entries first: an errored entry may have been a limit refusal that the
            # replay's own ledger reproduces without asking the model.
            ok = next((s for s in queue if s.error is None), None)
            chosen = ok if ok is not None else queue[0]
            if len(queue) > 1:
                queue.remove(chosen)
            return chosen


class ReplayLM(SyncLM):
    """An LM that only reads the trace. ``pinned``: always this run (the root).

    ``profile``: the recorded model's, as far as the trace tells it (by default, what the
    model's name tells: :func:`recursor.lm.profile.default_profile`).
    """

    def __init__(
        self,
        book: ReplayBook,
        name: str,
        *,
        pinned: RunRecord | None = None,
        profile: LMProfile | None = None,
    ) -> None:
        self.book = book
        self.name = name
        self.profile = profile or default_profile(name)
        self.pinned = pinned
        self.calls = 0
        self._lock = threading.Lock()  # batched sub-calls arrive on several threads

    def complete(self, messages: list[Message]) -> Completion:
        with self._lock:
            self.calls += 1
        if self.pinned is None and (not messages or messages[0].get("role") != "system"):
            sub = self.book.subcall(messages[-1]["content"] if messages else "")
            if sub.error is not None:
                raise _reraise(sub.error)
            return Completion(sub.reply, _usage(sub.usage), "stop")
        run = self.pinned or self.book.match(messages)
        if run is None:
            raise self.book.miss("a child run matches no run of the trace")
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        if turn >= len(run.calls):
            message = (
                f"run {run.run_id} recorded {len(run.calls)} model replies and the replay "
                f"asked for reply {turn + 1}"
            )
            if self.pinned is None:
                raise self.book.miss(message)
            # The root outran its recording: nothing sensible can follow, so stop loudly.
            raise ReplayExhausted(f"replay: {message}")
        call = run.calls[turn]
        return Completion(call.reply, _usage(call.usage), "stop")


# -- comparison -------------------------------------------------------------------------------


@dataclass(slots=True)
class CellDiff:
    """One cell whose replayed result is not the recorded one."""

    run_id: str
    depth: int
    iteration: int
    index: int
    code: str
    #: "stdout" | "stderr" | "error" | "final" | "missing" (recorded, not replayed) | "extra"
    field: str
    recorded: str | None
    replayed: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class ReplayReport:
    """What a replay of one root run found."""

    run_id: str
    runs: int = 0
    cells: int = 0
    diffs: list[CellDiff] = field(default_factory=list)
    recorded_answer: str | None = None
    replayed_answer: str | None = None
    recorded_stop: str | None = None
    replayed_stop: str | None = None
    #: the replay could not go on (it outran the recording, a child matched nothing)
    error: str | None = None
    #: model calls the replay answered from the trace (none reached a model)
    answered_from_trace: int = 0

    @property
    def ok(self) -> bool:
        return (
            not self.diffs
            and self.error is None
            and self.recorded_answer == self.replayed_answer
            and self.recorded_stop == self.replayed_stop
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ok"] = self.ok
        return out


def _cell_value(cell: CellRan, name: str) -> str | None:
    value = getattr(cell, name)
    return None if value is None else str(value)


def compare_runs(recorded: RunRecord, replayed: RunRecord, report: ReplayReport) -> None:
    """Add the differences between a recorded run's cells and its replay's to ``report``."""
    report.runs += 1
    mine = {(c.iteration, c.index): c for c in recorded.cells}
    theirs = {(c.iteration, c.index): c for c in replayed.cells}
    for key in sorted(mine.keys() | theirs.keys()):
        old, new = mine.get(key), theirs.get(key)
        if old is None or new is None:
            cell = new if old is None else old
            assert cell is not None
            kind = "extra" if old is None else "missing"
            report.diffs.append(
                CellDiff(recorded.run_id, recorded.depth, *key, cell.code, kind, None, None)
            )
            continue
        base = (recorded.run_id, recorded.depth, key[0], key[1], old.code)
        report.cells += 1
        for name in COMPARED:
            a = _cell_value(old, name)
            b = _cell_value(new, name)
            b = None if b is None else scrub(b)  # the recording was scrubbed when written
            if a != b:
                report.diffs.append(CellDiff(*base, name, a, b))


# -- the driver ------------------------------------------------------------------------------


def recorded_context(path: str | Path, root: RunRecord) -> Any:
    """The root's context from the blob the trace stored, or raise ContextError."""
    digest = root.started.context_sha256
    blob = read_context_blob(path, digest) if digest else None
    if blob is None:
        raise ContextError(
            "the trace holds no context (record with JsonlSink(path, store_context=True)); "
            "pass the context with --context PATH"
        )
    return blob[1]


def _limits(config: dict[str, Any]) -> Limits:
    known = {f.name for f in dataclasses.fields(Limits)}
    given = config.get("limits") or {}
    return Limits(**{k: v for k, v in given.items() if k in known})


def _recorded_profile(config: dict[str, Any], role: str) -> LMProfile | None:
    """The profile of the run's ``role`` model ("root", "sub") as recorded, so the replayed
    prompt advertises the same capacity and the broker refuses what it refused."""
    name = config.get(role)
    if not isinstance(name, str):
        return None
    profile = default_profile(name)
    window = config.get(f"{role}_context_window")
    style = config.get("prompt_style") if role == "root" else None
    if isinstance(window, int) and not isinstance(window, bool):
        profile = dataclasses.replace(profile, context_window=window)
    if style in ("full", "compact"):
        profile = dataclasses.replace(profile, prompt_style=style)
    return profile


def replay_run(
    runs: dict[str, RunRecord],
    root: RunRecord,
    context: ContextInput,
    *,
    environment: str | None = None,
) -> ReplayReport:
    """Replay one root run of a trace; compare every cell of its tree."""
    from recursor.rlm import RLM
    from recursor.sandbox import ENVIRONMENTS

    tree = subtree(runs, root.run_id)
    book = ReplayBook(tree)
    config = root.started.config
    # Every model the recording used becomes a ReplayLM of the same name, so usage per model
    # and llm_query(model=NAME) routing come out as recorded.
    by_depth, named = _recorded_models(tree)
    root_name = root.calls[0].model if root.calls else str(config.get("root", "replay"))
    recorded_env = str(config.get("environment", "subprocess"))
    # A custom Environment object was recorded by name only: fall back to the default one.
    env = environment or (recorded_env if recorded_env in ENVIRONMENTS else "subprocess")
    root_lm = ReplayLM(book, root_name, pinned=root, profile=_recorded_profile(config, "root"))
    sub_lm = ReplayLM(
        book, str(config.get("sub", root_name)), profile=_recorded_profile(config, "sub")
    )
    depth_lms = {d: ReplayLM(book, name) for d, name in by_depth.items() if d > 0}
    named_lms = {name: ReplayLM(book, name) for name in named}
    lms = [root_lm, sub_lm, *depth_lms.values(), *named_lms.values()]
    rlm = RLM(
        root_lm,
        sub_lm,
        max_depth=int(config.get("max_depth", 1)),
        environment=env,
        limits=_limits(config),
        models_by_depth=dict(depth_lms),
        models=dict(named_lms),
        # a run recorded before prompt versions were a choice ran v1's templates
        prompt_version=str(config.get("prompt_version", "v1")),
    )
    report = ReplayReport(
        root.run_id,
        recorded_answer=root.finished.answer if root.finished else None,
        recorded_stop=root.finished.stop_reason if root.finished else None,
    )
    events: list[Event]
    try:
        with rlm:
            result = rlm.completion(root.started.query, context=context)
        events = result.trace.events
        report.replayed_answer = result.answer
        report.replayed_stop = result.stop_reason
    except RunAborted as exc:
        report.error = str(exc)
        events = []
    if book.misses and report.error is None:
        report.error = "replay: " + "; ".join(dict.fromkeys(book.misses))
    report.answered_from_trace = sum(lm.calls for lm in lms)
    _compare_tree(group_runs(events), root, book, report)
    return report


def _recorded_models(tree: list[RunRecord]) -> tuple[dict[int, str], set[str]]:
    """The model each depth of the recorded tree used, and the other models it named."""
    by_depth: dict[int, str] = {}
    for run in tree[1:]:
        for call in run.calls[:1]:
            by_depth.setdefault(run.depth, call.model)
    named: set[str] = set()
    for run in tree:
        for sub in run.subcalls:
            if sub.child_run_id is None:
                by_depth.setdefault(sub.depth, sub.model)
                if sub.model != by_depth[sub.depth]:
                    named.add(sub.model)
    return by_depth, named


def _compare_tree(
    replayed: dict[str, RunRecord], root: RunRecord, book: ReplayBook, report: ReplayReport
) -> None:
    """Each replayed run against the recorded run it matches (the root against the root); the
    cells of a run that matches none are extra."""
    for new in replayed.values():
        if new.parent_id is None:
            old: RunRecord | None = root
        else:
            old = book.match(new.conversation()) if new.calls else None
        if old is None:
            report.diffs.extend(
                CellDiff(new.run_id, new.depth, c.iteration, c.index, c.code, "extra", None, None)
                for c in new.cells
            )
        else:
            compare_runs(old, new, report)


def replay(
    path: str | Path,
    *,
    context: ContextInput | None = None,
    run_id: str | None = None,
    environment: str | None = None,
) -> list[ReplayReport]:
    """Replay every root run of a trace file (or only ``run_id``).

    ``context``: the root context; by default the blob the trace stored.
    """
    runs = group_runs(Trace.load(path))
    roots = [r for r in root_runs(runs) if run_id is None or r.run_id == run_id]
    if not roots:
        raise ValueError(f"{path}: no run {run_id!r}" if run_id else f"{path}: no run recorded")
    reports = []
    for root in roots:
        ctx = recorded_context(path, root) if context is None else context
        reports.append(replay_run(runs, root, ctx, environment=environment))
    return reports
