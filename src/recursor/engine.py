"""The RLM loop, sans I/O.

:meth:`Engine.steps` is a generator. It yields actions (call the root model with these messages,
run this cell, read this variable) and is sent their results; errors of an action are thrown
into it. The sync and the async driver in :mod:`recursor.tree` are the only code that performs
actions, so the loop exists once (httpx drives its auth flows the same way).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from recursor import answer_shape, compaction, prompts
from recursor.context import ContextMeta
from recursor.errors import (
    LimitExceeded,
    NoProgress,
    OutputValidationError,
    RecursorError,
    RunAborted,
)
from recursor.limits import Ledger
from recursor.lm.base import Completion, Message
from recursor.output import TypedAnswer
from recursor.protocol import parse_reply
from recursor.sandbox.base import CellResult
from recursor.trace import CellRan, HistoryCompacted, LimitHit, ModelCalled, Trace
from recursor.usage import estimate_message_tokens

#: the smallest output budget a cell gets, so a cut marker always fits
_MIN_CELL_OUTPUT = 200
#: the note for a turn that re-ran the last turn's code to the same failure: a small root
#: (1.5B) otherwise sends one failing regex eight turns in a row and then guesses a number
_REPEATED = (
    "This code is the same as your last turn's, and it failed again. Running it again will not "
    "change that: change the code. Print what you search for before you extract from it, or "
    "search for a shorter part of it."
)


@dataclass(frozen=True, slots=True)
class CallModel:
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class RunCell:
    code: str
    output_limit: int
    #: the cell's place among its reply's code blocks
    index: int = 0


@dataclass(frozen=True, slots=True)
class ReadVar:
    name: str


Action = CallModel | RunCell | ReadVar


@dataclass(slots=True)
class Outcome:
    answer: str | None
    stop_reason: str
    iterations: int
    error: RecursorError | None = None
    messages: list[Message] = field(default_factory=list)
    #: the validated value of a typed answer (``output_type=``), else None
    output: Any = None


@dataclass(frozen=True, slots=True)
class Books:
    """Where a run's model calls and events are recorded: the tree's ledger and trace, under
    the run's id and its model's name."""

    ledger: Ledger
    trace: Trace
    run_id: str
    model_name: str


@dataclass(frozen=True, slots=True)
class History:
    """How a run's history starts, grows and is kept short: ``preface`` goes before the
    question (a conversation's earlier asks); ``notes`` gives lines the next observation carries
    besides the cells' output (background calls finished meanwhile; reading them is no I/O);
    ``compact`` replaces older turns by notes (:mod:`recursor.compaction`)."""

    preface: str | None = None
    compact: compaction.Compaction | None = None
    notes: Callable[[], list[str]] | None = None
    #: the root run's own checks (a typed answer, the cost circuit breaker)
    checks: RootChecks | None = None


@dataclass(frozen=True, slots=True)
class RootChecks:
    """What the root run checks besides the protocol: its final value against a typed answer
    (``output_type=``), and its spend against progress (the cost circuit breaker)."""

    typed: TypedAnswer | None = None
    breaker: bool = False


class Engine:
    """One RLM run's loop: the root model's turns, their cells and observations."""

    def __init__(
        self,
        *,
        query: str,
        meta: ContextMeta,
        settings: prompts.PromptSettings,
        books: Books,
        history: History | None = None,
    ) -> None:
        checks = None if history is None else history.checks
        self.query = query
        self.meta = meta
        self.s = settings
        self.ledger = books.ledger
        self.trace = books.trace
        self.run_id = books.run_id
        self.model_name = books.model_name
        self.messages: list[Message] = []
        self._logged = 0  # messages already recorded in the trace
        self._notes = None if history is None else history.notes
        self.iterations = 0
        #: put before the question (a conversation's earlier questions and answers)
        self.preface = None if history is None else history.preface
        self.compact = None if history is None else history.compact
        #: turns replaced by notes so far
        self.compacted_turns = 0
        #: typed answers: the spec, the rejections so far, the last final's JSON value
        self.typed = None if checks is None else checks.typed
        self._rejected = 0
        self._final_json: str | None = None
        self._output: Any = None
        #: the cost circuit breaker: the REPL fingerprint last seen, and the spend when it changed
        self.breaker = checks is not None and checks.breaker
        self._fingerprint: str | None = None
        self._progress_at = 0.0
        self._reviewed = False  # a final answer was sent back once (answer_shape)
        self._last_code: list[str] = []  # the previous turn's cells (a repeat is pointed out)

    def steps(self) -> Generator[Action, Any, Outcome]:
        self.messages = [
            {"role": "system", "content": prompts.system_prompt(self.meta, self.s)},
            {"role": "user", "content": prompts.user_prompt(self.query, self.meta, self.s)},
        ]
        if self.preface:
            self.messages[1]["content"] = self.preface + "\n\n" + self.messages[1]["content"]
        if self.typed is not None:
            self.messages[0]["content"] += "\n\n" + self.typed.spec.instructions()
        try:
            while self.iterations < self.s.max_iterations:
                self.iterations += 1
                yield from self._compact()
                reply = yield from self._call_model()
                answer, observation = yield from self._act(reply)
                if answer is not None:
                    rejected = self._check_final(answer)
                    if rejected is None:
                        return self._outcome(answer, "final")
                    observation = rejected
                self._check_progress()
                self.ledger.check_time()
                self.messages.append({"role": "user", "content": self._with_notes(observation)})
            # Out of turns: one last call that may only finish.
            self.messages[-1] = {
                "role": "user",
                "content": self.messages[-1]["content"] + "\n\n" + prompts.last_turn(self.s),
            }
            reply = yield from self._call_model()
            answer, _ = yield from self._act(reply)
            if answer is not None and self._reject(answer) is None:
                return self._outcome(answer, "final")
            return self._outcome(None, "max_iterations")
        except RunAborted:
            raise
        except LimitExceeded as exc:
            self.trace.emit(LimitHit(self.run_id, limit=exc.limit, message=str(exc)))
            return self._outcome(None, exc.stop_reason, exc)
        except RecursorError as exc:
            return self._outcome(None, "error", exc)

    def _with_notes(self, observation: str) -> str:
        notes = self._notes() if self._notes is not None else []
        return "\n\n".join([observation, "\n".join(notes)]) if notes else observation

    def _check_final(self, answer: str) -> str | None:
        """None to accept a final answer, else the observation that sends it back: a typed
        answer is checked against its type; a text one, once, against the question's obvious
        shape (a number, yes/no, one choice)."""
        rejected = self._reject(answer)
        if rejected is None and self.typed is None:
            rejected = self._second_look(answer)
        return rejected

    def _second_look(self, answer: str) -> str | None:
        """The observation that sends back a final answer without the question's obvious shape
        (a line where a number was asked); once per run, so a misread question costs a turn."""
        if self._reviewed:
            return None
        note = answer_shape.review(self.query, answer)
        if note is None:
            return None
        self._reviewed = True
        return prompts.observation([], [note], self.iterations, self.s)

    def _outcome(
        self, answer: str | None, reason: str, error: RecursorError | None = None
    ) -> Outcome:
        return Outcome(answer, reason, self.iterations, error, self.messages, self._output)

    def _reject(self, answer: str) -> str | None:
        """None when the final answer stands; else the observation that asks for a correction.
        Raises OutputValidationError once ``max_retries`` corrections were asked for."""
        if self.typed is None:
            return None
        checked = self.typed.spec.check(answer, self._final_json)
        if checked.ok:
            self._output = checked.value
            return None
        if self._rejected >= self.typed.max_retries:
            raise OutputValidationError(
                f"the final answer did not match output_type after {self._rejected} "
                f"correction(s): {'; '.join(checked.errors)}",
                errors=list(checked.errors),
                answer=answer,
            )
        self._rejected += 1
        return self.typed.spec.retry_message(checked, self.typed.max_retries - self._rejected + 1)

    def _saw(self, cell: CellResult) -> None:
        """Note a cell's REPL fingerprint: a changed one is progress (the breaker's clock)."""
        if self.breaker and cell.fingerprint != self._fingerprint:
            self._fingerprint = cell.fingerprint
            self._progress_at = self.ledger.spent_usd()

    def _check_progress(self) -> None:
        cap = self.ledger.limits.max_cost_without_progress_usd
        if not self.breaker or cap is None:
            return
        stalled = self.ledger.spent_usd() - self._progress_at
        if stalled >= cap:
            exc = NoProgress(
                f"max_cost_without_progress_usd={cap}: ${stalled:.6f} spent without the REPL's "
                f"variables changing (${self.ledger.spent_usd():.6f} in all)"
            )
            self.ledger.note(exc)
            raise exc

    def _call_model(self) -> Generator[Action, Any, Completion]:
        self.ledger.check_model_call(estimate_message_tokens(self.messages))
        t0 = time.perf_counter()
        completion: Completion = yield CallModel(list(self.messages))
        self.ledger.record(self.model_name, completion.usage)
        new = self.messages[self._logged :]
        self.messages.append({"role": "assistant", "content": completion.text})
        self._logged = len(self.messages)
        self.trace.emit(
            ModelCalled(
                self.run_id,
                iteration=self.iterations,
                model=self.model_name,
                new_messages=new,
                reply=completion.text,
                usage=completion.usage.to_dict(),
                latency_s=time.perf_counter() - t0,
            )
        )
        return completion

    def _compact(self) -> Generator[Action, Any, None]:
        """Replace older turns by the root model's notes once the history passes the threshold
        (recursor.compaction); the REPL is untouched."""
        if self.compact is None:
            return
        plan = compaction.plan(self.messages, self.compact, self.compacted_turns)
        if plan is None:
            return
        ask = compaction.request(self.messages, plan, self.compact)
        self.ledger.check_model_call(estimate_message_tokens(ask))
        t0 = time.perf_counter()
        done: Completion = yield CallModel(ask)
        self.ledger.record(self.model_name, done.usage)
        self.messages = compaction.apply(self.messages, plan, done.text, self.compact)
        self.compacted_turns = plan.last
        # what is left was recorded already, or is the notes (recorded in the event below)
        self._logged = len(self.messages)
        self.trace.emit(
            HistoryCompacted(
                self.run_id,
                iteration=self.iterations,
                model=self.model_name,
                first_turn=plan.first,
                last_turn=plan.last,
                tokens_before=plan.tokens_before,
                tokens_after=estimate_message_tokens(self.messages),
                summary=done.text,
                usage=done.usage.to_dict(),
                latency_s=time.perf_counter() - t0,
            )
        )

    def _act(self, reply: Completion) -> Generator[Action, Any, tuple[str | None, str]]:
        """Run the reply's cells; the final answer if one was given, else the observation."""
        parsed = parse_reply(reply.text)
        blocks = list(parsed.code_blocks)
        # A block left open because the model stopped (a stop sequence ate the closing fence, or
        # a small model forgot it) is code all the same; one cut off by max_tokens is not.
        if parsed.unclosed_code and reply.finish_reason != "length":
            blocks.append(parsed.unclosed_code)
        cells: list[CellResult] = []
        extra: list[str] = []
        self._final_json = None
        budget = self.s.max_output_chars
        for index, code in enumerate(blocks):
            cell: CellResult = yield RunCell(code, max(budget, _MIN_CELL_OUTPUT), index)
            budget -= cell.shown_chars
            cells.append(cell)
            self._saw(cell)
            self.trace.emit(
                CellRan(
                    self.run_id,
                    iteration=self.iterations,
                    index=index,
                    code=code,
                    stdout=cell.stdout,
                    stderr=cell.stderr,
                    error=cell.error,
                    duration_s=cell.duration_s,
                    timed_out=cell.timed_out,
                    lost_state=cell.lost_state,
                    final=cell.final,
                )
            )
            if cell.final is not None:
                self._final_json = cell.final_json
                return cell.final, ""
            self.ledger.check_time()
        if parsed.final is not None:
            if parsed.final.kind == "value":
                return parsed.final.text, ""
            value: str | None = yield ReadVar(parsed.final.text)
            if value is not None:
                return value, ""
            extra.append(
                f"FINAL_VAR({parsed.final.text}) named no variable of the REPL, so the run did not "
                "finish. Assign the answer to that variable in code first."
            )
        elif parsed.bad_final_var is not None:
            extra.append(
                f"FINAL_VAR({parsed.bad_final_var}) must name a variable, e.g. FINAL_VAR(result); "
                "to give the answer itself, write FINAL(answer)."
            )
        if not blocks and not extra:
            if parsed.unclosed_fence:
                return None, (
                    "Your reply was cut off (the output token limit) inside a ```repl block, so "
                    "it did not run. Write shorter code."
                )
            return None, prompts.no_code(self.s)
        extra += self._repeat_note(blocks, cells)
        return None, prompts.observation(cells, extra, self.iterations, self.s)

    def _repeat_note(self, blocks: list[str], cells: list[CellResult]) -> list[str]:
        """[_REPEATED] when this turn ran the last turn's code again and a cell failed (an
        error, or nothing printed) again; else []."""
        code = [b.strip() for b in blocks]
        repeated = bool(code) and code == self._last_code
        self._last_code = code
        failed = any(c.error or not c.stdout.strip() for c in cells)
        return [_REPEATED] if repeated and failed else []
