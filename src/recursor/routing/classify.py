"""One cheap call to the sub-model: the information complexity of a question.

The prompt is versioned package data (``prompts/v1/route_complexity.txt``); the reply's first
class word counts. A reply with none falls back to ``linear``, the middle class: it never sends
a question that needs the whole context to one call of a context that does not fit, and never
pays for depth 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recursor import prompts
from recursor.context import ContextMeta
from recursor.lm.base import LM, Completion, Message
from recursor.routing.choose import COMPLEXITIES, Complexity

CLASSIFY_PROMPT_VERSION = "v1"
_WORD = re.compile(r"\b(constant|linear|quadratic)\b", re.IGNORECASE)
#: characters of the question the classifier reads (the question, not a pasted context)
_QUERY_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class Estimate:
    complexity: Complexity
    #: the reply named no class, so the fallback was used
    guessed: bool
    completion: Completion


def messages(query: str, meta: ContextMeta) -> list[Message]:
    described = f"{meta.type}, {meta.total_chars:,} characters"
    if meta.n_items is not None:
        described += f", {meta.n_items:,} items"
    text = prompts.template("route_complexity", CLASSIFY_PROMPT_VERSION).substitute(
        meta=described, query=query[:_QUERY_CHARS]
    )
    return [{"role": "user", "content": text}]


def parse(reply: str) -> tuple[Complexity, bool]:
    found = _WORD.search(reply)
    if found is None:
        return "linear", True
    word = found.group(1).lower()
    return next(c for c in COMPLEXITIES if c == word), False


def classify(sub: LM, query: str, meta: ContextMeta) -> Estimate:
    done = sub.complete(messages(query, meta))
    complexity, guessed = parse(done.text)
    return Estimate(complexity, guessed, done)
