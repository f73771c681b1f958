"""The RLM loop, sans I/O.

:meth:`Engine.steps` is a generator. It yields actions (call the root model with these messages,
run this cell, read this variable) and is sent their results; errors of an action are thrown
into it. The sync and the async driver in :mod:`recursor.tree` are the only code that performs
actions, so the loop exists once (httpx drives its auth flows the same way).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from recursor import answer_shape, prompts
from recursor.context import ContextMeta
from recursor.errors import LimitExceeded, RecursorError, RunAborted
from recursor.limits import Ledger
from recursor.lm.base import Completion, Message
from recursor.protocol import parse_reply
from recursor.sandbox.base import CellResult
from recursor.trace import CellRan, LimitHit, ModelCalled, Trace
from recursor.usage import estimate_message_tokens

#: the smallest output budget a cell gets, so a cut marker always fits
_MIN_CELL_OUTPUT = 200


@dataclass(frozen=True, slots=True)
class CallModel:
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class RunCell:
    code: str
    output_limit: int


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


@dataclass(frozen=True, slots=True)
class Books:
    """Where a run's model calls and events are recorded: the tree's ledger and trace, under
    the run's id and its model's name."""

    ledger: Ledger
    trace: Trace
    run_id: str
    model_name: str


class Engine:
    """One RLM run's loop: the root model's turns, their cells and observations."""

    def __init__(
        self,
        *,
        query: str,
        meta: ContextMeta,
        settings: prompts.PromptSettings,
        books: Books,
    ) -> None:
        self.query = query
        self.meta = meta
        self.s = settings
        self.ledger = books.ledger
        self.trace = books.trace
        self.run_id = books.run_id
        self.model_name = books.model_name
        self.messages: list[Message] = []
        self._logged = 0  # messages already recorded in the trace
        self.iterations = 0
        self._reviewed = False  # a final answer was sent back once (answer_shape)

    def steps(self) -> Generator[Action, Any, Outcome]:
        self.messages = [
            {"role": "system", "content": prompts.system_prompt(self.meta, self.s)},
            {"role": "user", "content": prompts.user_prompt(self.query, self.meta, self.s)},
        ]
        try:
            while self.iterations < self.s.max_iterations:
                self.iterations += 1
                reply = yield from self._call_model()
                answer, observation = yield from self._act(reply)
                if answer is not None:
                    correction = self._second_look(answer)
                    if correction is None:
                        return self._outcome(answer, "final")
                    observation = correction
                self.ledger.check_time()
                self.messages.append({"role": "user", "content": observation})
            # Out of turns: one last call that may only finish.
            self.messages[-1] = {
                "role": "user",
                "content": self.messages[-1]["content"] + "\n\n" + prompts.last_turn(self.s),
            }
            reply = yield from self._call_model()
            answer, _ = yield from self._act(reply)
            if answer is not None:
                return self._outcome(answer, "final")
            return self._outcome(None, "max_iterations")
        except RunAborted:
            raise
        except LimitExceeded as exc:
            self.trace.emit(LimitHit(self.run_id, limit=exc.limit, message=str(exc)))
            return self._outcome(None, exc.stop_reason, exc)
        except RecursorError as exc:
            return self._outcome(None, "error", exc)

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
        return Outcome(answer, reason, self.iterations, error, self.messages)

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
        budget = self.s.max_output_chars
        for index, code in enumerate(blocks):
            cell: CellResult = yield RunCell(code, max(budget, _MIN_CELL_OUTPUT))
            budget -= cell.shown_chars
            cells.append(cell)
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
        return None, prompts.observation(cells, extra, self.iterations, self.s)
