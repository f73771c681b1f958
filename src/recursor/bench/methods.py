"""Methods behind one interface: a task and the models in, an :class:`Attempt` out.

* ``direct``: the context cut to the model's window (its head: what a truncating client
  sends), then one call.
* ``summarize``: fixed split-and-merge summarization: every window-sized chunk is summarized
  with the question in view by the sub-model, summaries are merged the same way until they fit,
  and the root answers from them.
* ``bm25``: the context split into passages, ranked against the question with ``bm25s``; the
  best that fit the window go to the root in their original order.
* ``compaction``: an iterative summary agent: the sub-model reads the chunks in order, keeping
  running notes it rewrites (compacts) at every step; the root answers from the final notes.
* ``rlm-d0`` / ``rlm-d1`` / ``rlm-d2``: :class:`recursor.RLM` at that ``max_depth``.
* ``oracle``: the family's known-good program run through the REPL with the real sub-model;
  it measures the scaffold, not the root model. It lives in :mod:`recursor.bench.oracle`
  (which builds on this module), and :mod:`recursor.bench.registry` names them all.

Windows are counted as :mod:`recursor.baseline` says (the direct and summarize logic lives
there: the router runs it too).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from recursor.baseline import (
    ANSWER_SYSTEM,
    CHARS_PER_TOKEN,
    RESERVE_TOKENS,
    Meter,
    chunks,
    fit,
    summarize_answer,
    usable,
)
from recursor.bench.endpoint import Endpoint
from recursor.bench.task import Task
from recursor.errors import ConfigurationError
from recursor.limits import Limits
from recursor.lm.base import LM
from recursor.lm.profile import profile_of
from recursor.usage import Usage

__all__ = ["ANSWER_SYSTEM", "CHARS_PER_TOKEN", "RESERVE_TOKENS", "chunks", "fit", "usable"]

#: the meter of the baselines (in the core since the router's direct route and fallback use it)
_Meter = Meter


@dataclass(frozen=True)
class Models:
    """What a method runs on."""

    root: LM
    sub: LM
    #: input tokens the models accept (None: the model's profile, else 8192)
    window_tokens: int | None = None
    environment: str = "subprocess"
    limits: Limits = field(default_factory=Limits)
    #: concurrent sub-calls of one task (the RLM's max_concurrency, the baselines' map width)
    concurrency: int = 8
    #: where peer methods (rlms) reach the root model; None: served to them by a bridge
    endpoint: Endpoint | None = None
    #: where RLM methods write each run's JSONL trace (``<task>.<method>.jsonl``), to read
    #: trajectories afterwards; None: no traces. Not part of a job's identity.
    trace_dir: Path | None = None

    def window(self, lm: LM) -> int:
        if self.window_tokens is not None:
            return self.window_tokens
        return profile_of(lm).context_window or 8192


@dataclass
class Attempt:
    """What one method made of one task."""

    answer: str | None
    usage: Usage = field(default_factory=Usage)
    #: model calls besides the root's own turns (sub-calls, chunk summaries, ...)
    subcalls: int = 0
    iterations: int | None = None
    stop_reason: str = "answered"
    error: str | None = None


class Method(Protocol):
    name: str

    def run(self, task: Task, models: Models) -> Attempt: ...


def _answer_prompt(task: Task, material: str, what: str = "Context") -> str:
    return f"{what}:\n{material}\n\nQuestion: {task.query}\nAnswer:"


class Direct:
    name = "direct"

    def run(self, task: Task, models: Models) -> Attempt:
        meter = _Meter()
        budget = usable(models.window(models.root))
        answer = meter.ask(
            models.root, ANSWER_SYSTEM, _answer_prompt(task, fit(task.rendered(), budget))
        )
        return Attempt(answer, meter.usage, subcalls=0)


class Summarize:
    name = "summarize"

    def run(self, task: Task, models: Models) -> Attempt:
        meter = _Meter()
        windows = (models.window(models.root), models.window(models.sub))
        answer = summarize_answer(
            meter, task.query, task.rendered(), models.root, models.sub, windows, models.concurrency
        )
        return Attempt(answer, meter.usage, subcalls=meter.calls - 1)


class BM25:
    name = "bm25"
    passage_tokens = 256

    def run(self, task: Task, models: Models) -> Attempt:
        try:
            import bm25s  # type: ignore[import-untyped]  # ships no type information
        except ImportError as exc:  # pragma: no cover - the bench extra installs it
            raise ConfigurationError('bm25 needs bm25s: pip install "recursor[bench]"') from exc
        meter = _Meter()
        budget = usable(models.window(models.root)) * CHARS_PER_TOKEN
        passages = chunks(task.rendered(), self.passage_tokens)
        retriever = bm25s.BM25()
        retriever.index(
            bm25s.tokenize(passages, stopwords="en", show_progress=False), show_progress=False
        )
        k = min(len(passages), max(1, budget // (self.passage_tokens * CHARS_PER_TOKEN)) * 2)
        ids, _ = retriever.retrieve(
            bm25s.tokenize([task.query], stopwords="en", show_progress=False),
            k=k,
            show_progress=False,
        )
        chosen: list[int] = []
        used = 0
        for i in (int(x) for x in ids[0]):
            if used + len(passages[i]) > budget:
                continue
            chosen.append(i)
            used += len(passages[i])
        material = "\n...\n".join(passages[i] for i in sorted(chosen))
        answer = meter.ask(models.root, ANSWER_SYSTEM, _answer_prompt(task, material, "Passages"))
        return Attempt(answer, meter.usage, subcalls=0)


_NOTES_SYSTEM = (
    "You read a long document one part at a time, keeping notes for answering a question at "
    "the end. Rewrite the notes to include what the new part adds that bears on the question "
    "(facts, names, numbers, running counts), and keep them short. Reply with the notes only."
)


class Compaction:
    name = "compaction"
    notes_tokens = 512

    def run(self, task: Task, models: Models) -> Attempt:
        meter = _Meter()
        notes = min(self.notes_tokens, models.window(models.sub) // 4)
        window = usable(models.window(models.sub)) - notes
        so_far = "(none yet)"
        for part in chunks(task.rendered(), window):
            so_far = meter.ask(
                models.sub,
                _NOTES_SYSTEM,
                f"Question: {task.query}\n\nNotes so far:\n{so_far}\n\nNext part:\n{part}",
            )
            so_far = fit(so_far, notes)  # compaction is enforced, not only requested
        answer = meter.ask(models.root, ANSWER_SYSTEM, _answer_prompt(task, so_far, "Notes"))
        return Attempt(answer, meter.usage, subcalls=meter.calls - 1)


class RLMMethod:
    """:class:`recursor.RLM` at ``depth``; ``prompt_version`` pins the prompt templates (the
    method is then named ``rlm-d1-v1`` and so on, so versions compare in one matrix)."""

    def __init__(self, depth: int, prompt_version: str | None = None) -> None:
        self.depth = depth
        self.prompt_version = prompt_version
        self.name = f"rlm-d{depth}" + (f"-{prompt_version}" if prompt_version else "")

    def run(self, task: Task, models: Models) -> Attempt:
        from recursor.prompts import DEFAULT_VERSION
        from recursor.rlm import RLM
        from recursor.trace import JsonlSink

        with ExitStack() as stack:
            sinks = []
            if models.trace_dir is not None:
                models.trace_dir.mkdir(parents=True, exist_ok=True)
                path = models.trace_dir / f"{task.id}.{self.name}.jsonl"
                sinks.append(stack.enter_context(JsonlSink(path)))
            rlm = stack.enter_context(
                RLM(
                    models.root,
                    models.sub,
                    max_depth=self.depth,
                    environment=models.environment,
                    limits=models.limits,
                    max_concurrency=models.concurrency,
                    prompt_version=self.prompt_version or DEFAULT_VERSION,
                    sinks=list(sinks),
                )
            )
            return rlm_attempt(rlm.completion(task.query, task.context))


class RoutedMethod:
    """``routed``: :class:`recursor.RLM` with ``route="auto"`` (one classification call on the
    sub-model, then direct, depth 0 or depth 1). The root's window is the bench's, so the
    direct route is taken exactly when the whole context fits what ``direct`` may send."""

    name = "routed"

    def run(self, task: Task, models: Models) -> Attempt:
        from recursor.rlm import RLM

        with RLM(
            models.root,
            models.sub,
            max_depth=1,
            environment=models.environment,
            limits=models.limits,
            max_concurrency=models.concurrency,
            context_windows={models.root.name: models.window(models.root)},
            route="auto",
        ) as rlm:
            result = rlm.completion(task.query, task.context)
        attempt = rlm_attempt(result)
        if result.route is not None:
            attempt.stop_reason = f"{attempt.stop_reason} via {result.route.route}"
        return attempt


def rlm_attempt(result: object) -> Attempt:
    from recursor.rlm import RLMResult
    from recursor.trace.events import SubcallMade

    assert isinstance(result, RLMResult)
    return Attempt(
        answer=result.answer,
        usage=result.usage.total,
        subcalls=len(result.trace.of(SubcallMade)),
        iterations=result.iterations,
        stop_reason=result.stop_reason,
        error=None if result.error is None else f"{type(result.error).__name__}: {result.error}",
    )
