"""The shape a question's answer obviously has, and one corrective word when a final answer
does not have it.

A small root finishes with the line it found (or the whole context) instead of the value in
it. When the question makes the shape plain (a number, yes or no, one of listed choices, a
short value) and the final answer does not fit, the engine sends one observation saying so
instead of accepting it (:func:`review`); the next final answer is accepted whatever it is, so
a check that misreads a question costs one turn, never the run.

Deliberately conservative: no shape is guessed from an open question ("why", "list", "describe",
"summarize"), and a number may carry a few words ("about 12 days") as long as it is short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Shape = Literal["number", "yes/no", "choice", "value"]

#: a short value (a name, a code, a date) fits in this many characters
VALUE_CHARS = 200
#: and a number with its unit or a few words around it in this many
NUMBER_CHARS = 60
#: words without a digit a number may carry ("about 12 days", "the answer is 12")
NUMBER_WORDS = 3
_PREVIEW = 60

_NUMBER_Q = re.compile(
    r"\bhow (many|much|old|long|far|tall|often)\b|\b(number|count|total|sum|amount|year|age)\b"
    r"(?! of the (label|name|person|city|country|company))",
    re.I,
)
_NOT_NUMBER = re.compile(r"\b(phone|telephone|serial|account|which number|number of the)\b", re.I)
_YES_NO_Q = re.compile(
    r"^\s*(is|are|does|do|did|can|could|was|were|has|have|had|will|would|should)\b", re.I
)
_OPEN_Q = re.compile(
    r"\b(why|explain|describe|summar\w*|list|all the|every|each|compare|discuss|outline)\b", re.I
)
_VALUE_Q = re.compile(
    r"^\s*(what|which|who|whom|whose|where|when|in which|on which|at which)\b", re.I
)
#: "Answer with one of: 'a', 'b'": the choices of the answer (not a list the question describes)
_CHOICES = re.compile(
    r"\b(?:(?:answer|reply|respond)\s+(?:with\s+)?(?:only\s+)?|choose\s+|pick\s+)one of:?\s*"
    r"((?:'[^']{1,60}'[,;]?\s*(?:or\s+)?)+)",
    re.I,
)
_QUOTED = re.compile(r"'([^']{1,60})'")
_DIGIT = re.compile(r"\d")
#: an explicit instruction to give the number alone ("Answer with the number only.")
_ONLY_NUMBER = re.compile(
    r"\b(?:the |a )?number only\b|\bonly (?:the |a )?number\b|\bjust (?:the |a )?number\b", re.I
)
#: a number: digits with separators, a sign, a decimal part, a percent sign
_NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?%?"
#: a number alone
_BARE_NUMBER = re.compile(_NUMBER)
#: a number inside text (not inside a word or a code like "agent-2033")
_NUMBER_IN = re.compile(rf"(?<![\w-]){_NUMBER}(?![\w-])")


@dataclass(frozen=True, slots=True)
class Expected:
    shape: Shape
    #: the listed choices, for "choice"
    choices: tuple[str, ...] = ()
    #: the question says "the number only": nothing may come with it, not even a word
    only: bool = False


def asked(question: str) -> str | None:
    """The sentence that asks: the last one ending in "?" (a question may open with a
    description of the data, which says nothing of the answer's shape). None for an
    instruction ("count the refunds"): its answer's shape is not obvious enough to correct."""
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", question.strip()) if s.endswith("?")]
    return sentences[-1] if sentences else None


def expected(question: str) -> Expected | None:
    """The answer's shape when ``question`` makes it obvious, else None."""
    listed = _CHOICES.search(question)
    if listed:
        options = tuple(_QUOTED.findall(listed.group(1)))
        if len(options) >= 2:
            return Expected("choice", options)
    if _ONLY_NUMBER.search(question):
        return Expected("number", only=True)
    return _asked_shape(asked(question))


def _asked_shape(sentence: str | None) -> Expected | None:
    """The shape the asking sentence makes obvious (instructions aside), else None."""
    if sentence is None or _OPEN_Q.search(sentence):
        return None
    if _YES_NO_Q.search(sentence):
        return None if " or " in sentence else Expected("yes/no")
    if _NUMBER_Q.search(sentence) and not _NOT_NUMBER.search(sentence):
        return Expected("number")
    if _VALUE_Q.search(sentence):
        return Expected("value")
    return None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s-]", " ", text.lower()).split())


def _number(text: str, want: Expected) -> str | None:
    if not _DIGIT.search(text):
        return "has no number in it"
    if want.only:
        bare = _BARE_NUMBER.fullmatch(text.rstrip(".").strip())
        return None if bare else "is not the number alone (the question asks for the number only)"
    if len(text) > NUMBER_CHARS:
        return f"is {len(text):,} characters long, not a number"
    if sum(1 for w in text.split() if not _DIGIT.search(w)) > NUMBER_WORDS:
        return "is a sentence, not a number"
    return None


def _yes_no(text: str, want: Expected) -> str | None:
    first = _norm(text).split(" ", 1)[0] if text else ""
    return None if first in ("yes", "no") else "does not start with yes or no"


def _choice(text: str, want: Expected) -> str | None:
    named = [c for c in want.choices if _norm(c) in _norm(text)]
    if len(named) == 1 and len(text) <= VALUE_CHARS:
        return None
    return "does not name exactly one of the choices"


def _value(text: str, want: Expected) -> str | None:
    if len(text) > VALUE_CHARS:
        return f"is {len(text):,} characters long: a whole passage, not the value asked for"
    return None


_CHECKS = {"number": _number, "yes/no": _yes_no, "choice": _choice, "value": _value}


def problem(answer: str, want: Expected) -> str | None:
    """What is wrong with ``answer`` for ``want``, or None when it fits."""
    return _CHECKS[want.shape](answer.strip(), want)


_ASKS = {
    "number": "a number",
    "yes/no": "yes or no",
    "choice": "exactly one of: {choices}",
    "value": "a short value (a name, a number, a date), not a passage",
}


def review(question: str, answer: str) -> str | None:
    """The corrective observation for a final answer that does not have the question's
    obvious shape; None when it does, or when the question has no obvious shape."""
    want = expected(question)
    if want is None:
        return None
    wrong = problem(answer, want)
    if wrong is None:
        return None
    preview = " ".join(answer.split())[:_PREVIEW]
    number = _sole_number(answer) if want.only else None
    if number is not None:
        # short and with the line to send: a 1.5B root given the long note below re-ran the
        # same cell and repeated its answer (the demo's needles, 3 of 10)
        return (
            f"Your final answer was not accepted: the question asks for the number only, and "
            f"{preview!r} has more than the number. The number in it is {number}. If that is "
            f"the answer, reply with exactly this line:\nFINAL({number})"
        )
    if want.only:
        asks = "the number only, with nothing around it"
    else:
        asks = _ASKS[want.shape].format(choices=", ".join(f"'{c}'" for c in want.choices))
    return (
        f"Your final answer was not accepted: it {wrong} (it starts {preview!r}). The question "
        f"asks for {asks}. Take only that value out of what you found (with re or split, or "
        "llm_query on the matching lines), put it in a variable, print it, and call FINAL_VAR "
        "again. If the answer really is what you gave, give it again and it will be accepted."
    )


def _sole_number(answer: str) -> str | None:
    """For "the number only": the one number the answer holds, to offer back (the model still
    decides; the engine never rewrites an answer). None unless there is exactly one."""
    found = {m.group().rstrip(".,") for m in _NUMBER_IN.finditer(answer)}
    return found.pop() if len(found) == 1 else None
