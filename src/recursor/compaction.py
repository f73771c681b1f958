"""History compaction: when a root's conversation nears its model's window, the older turns are
replaced by notes the root model writes about them.

Pure functions; :class:`~recursor.engine.Engine` performs the one model call. Kept verbatim: the
system prompt, the question (messages 0 and 1) and the last turns. The REPL is untouched, so
nothing computed is lost: the notes name the variables that hold it.

The notes go in as an assistant message so that the roles still alternate (question, notes,
observation, reply, ...): some APIs refuse two user messages in a row.
"""

from __future__ import annotations

from dataclasses import dataclass

from recursor import prompts
from recursor.errors import ConfigurationError
from recursor.lm.base import Message
from recursor.protocol import clip
from recursor.usage import estimate_message_tokens

__all__ = ["Compaction", "Plan", "apply", "plan", "request"]


@dataclass(frozen=True, slots=True)
class Compaction:
    """When to compact: past ``compact_at`` of ``window_tokens`` (the root profile's window or
    ``RLM(context_windows=...)``'s), keeping the last ``keep_turns`` turns verbatim."""

    window_tokens: int
    compact_at: float = 0.8
    keep_turns: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.compact_at < 1.0:
            raise ConfigurationError("compact_at must be between 0 and 1")
        if self.keep_turns < 1:
            raise ConfigurationError("keep_turns must be >= 1")

    @property
    def threshold(self) -> int:
        return int(self.window_tokens * self.compact_at)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a compaction replaces: ``messages[start:end]``, turns ``first`` to ``last``."""

    start: int
    end: int
    first: int
    last: int
    tokens_before: int


def plan(messages: list[Message], c: Compaction, compacted_turns: int) -> Plan | None:
    """The span to compact, or None while under the threshold (or nothing old enough).

    ``messages`` is [system, question, (notes), reply, observation, ..., observation]; the tail
    kept starts at an observation, so the notes (an assistant message) fit before it.
    """
    tokens = estimate_message_tokens(messages)
    if tokens <= c.threshold:
        return None
    has_notes = compacted_turns > 0
    start = 2
    end = len(messages) - (2 * c.keep_turns - 1)
    # a span of fewer than three messages gains next to nothing
    if end - start < 3:
        return None
    # notes + the replies/observations between them: whole turns after the earlier notes
    turns = (end - start - (1 if has_notes else 0) + 1) // 2
    return Plan(start, end, compacted_turns + 1, compacted_turns + turns, tokens)


def request(messages: list[Message], p: Plan, c: Compaction) -> list[Message]:
    """The messages asking the root model for notes on ``messages[p.start:p.end]``."""
    parts = []
    for m in messages[p.start : p.end]:
        who = "agent" if m["role"] == "assistant" else "REPL output"
        parts.append(f"--- {who} ---\n{m['content']}")
    # the request itself must fit: the turns get half the window, in characters (4 a token)
    turns = clip("\n".join(parts), c.window_tokens * 2)
    question = clip(messages[1]["content"], 4_000)
    text = prompts.template("compact_history").substitute(
        question=question, turns=turns, max_words=max(50, c.window_tokens // 20)
    )
    return [{"role": "user", "content": text}]


def apply(messages: list[Message], p: Plan, summary: str, c: Compaction) -> list[Message]:
    """``messages`` with the span replaced by the notes (cut to a tenth of the window)."""
    notes = prompts.template("compact_notes").substitute(
        first=p.first, last=p.last, summary=clip(summary.strip(), c.window_tokens * 4 // 10)
    )
    return [*messages[: p.start], {"role": "assistant", "content": notes}, *messages[p.end :]]
