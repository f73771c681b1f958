"""Scorers: an answer string (or None) and a gold value to a score in [0, 1].

Each family names its scorer; :func:`score` dispatches on that name so a task stays plain data
(it can be written to JSON and read back with its scorer intact).

* ``contains`` (S-NIAH, RULER): 1 when the gold value appears in the answer.
* ``oolong`` (OOLONG): numeric gold → ``0.75 ** |error|`` on the first number in the answer;
  otherwise exact match after normalisation (case, punctuation, a leading "Answer:", "Label:",
  "User:" or "Date:"); a comparison gold ("more common than") also matches a sentence that
  names that relation and no other, as OOLONG's prompt asks for "A is more common than B".
* ``pairs_f1`` (OOLONG-Pairs): F1 between the set of unordered pairs in the answer and the gold.
* ``choice`` (CodeQA, LongBench-v2): 1 when the answer's chosen letter is the gold letter.
* ``exact`` (multi-hop, BrowseComp-Plus): normalised exact match, or the gold as a whole
  phrase of a short answer.

The lenient scorers (``contains``, ``oolong``'s first number, ``choice``'s first letter) give 0
to an answer longer than :func:`answer_bound`: an answer that dumps the context (or the whole
line the value sat in, 100,000 characters of filler without a line break) holds the gold
without being an answer, and crediting it hid exactly that failure.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from typing import Any

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_PAIR = re.compile(r"\(\s*([A-Za-z0-9_\-]+)\s*,\s*([A-Za-z0-9_\-]+)\s*\)")
_PUNCT = str.maketrans("", "", string.punctuation.replace("-", ""))
_LEADS = ("final answer", "the answer is", "answer", "label", "user", "date")
#: OOLONG's comparison answers: an answer saying one of these (and no other) says it
RELATIONS = ("more common than", "less common than", "same frequency as")
#: the least a bounded scorer allows, whatever the gold's length: room for a short sentence
MIN_BOUND = 200
#: and how many times the gold's length it allows beyond that
BOUND_FACTOR = 10


def answer_bound(gold: Any) -> int:
    """The longest answer a lenient scorer reads: max(200 characters, 10x the gold's)."""
    return max(MIN_BOUND, BOUND_FACTOR * len(str(gold)))


def too_long(answer: str, gold: Any) -> bool:
    return len(answer.strip()) > answer_bound(gold)


def normalize(text: str) -> str:
    """Lower case, no punctuation (hyphens kept), single spaces, a leading "Answer:" dropped."""
    text = text.strip().lower()
    for lead in _LEADS:
        if text.startswith(lead):
            text = text[len(lead) :].lstrip(" :-")
            break
    return " ".join(text.translate(_PUNCT).split())


def contains(answer: str | None, gold: Any) -> float:
    if answer is None or too_long(answer, gold):
        return 0.0
    return 1.0 if str(gold).lower() in answer.lower() else 0.0


def first_number(answer: str) -> float | None:
    match = _NUMBER.search(answer.replace(",", ""))
    return None if match is None else float(match.group())


def oolong(answer: str | None, gold: Any) -> float:
    if answer is None or too_long(answer, gold):
        return 0.0
    if isinstance(gold, bool):
        gold = str(gold)
    if isinstance(gold, int | float):
        number = first_number(answer)
        return 0.0 if number is None else float(0.75 ** abs(number - float(gold)))
    got, want = normalize(answer), normalize(str(gold))
    if got == want:
        return 1.0
    # "Answer: 'entity' is more common than 'location'" names the relation in a sentence, as
    # OOLONG's own prompt asks; it counts when it names exactly one relation, the gold one
    if want in RELATIONS:
        named = [r for r in RELATIONS if r in got]
        return 1.0 if named == [want] else 0.0
    return 0.0


def parse_pairs(answer: str) -> set[frozenset[str]]:
    """Every ``(a, b)`` in the answer, unordered; a pair of one id twice is not a pair."""
    return {frozenset(p) for p in _PAIR.findall(answer) if p[0] != p[1]}


def pairs_f1(answer: str | None, gold: Any) -> float:
    want = {frozenset(str(x) for x in pair) for pair in gold}
    got = parse_pairs(answer or "")
    if not want and not got:
        return 1.0
    hits = len(want & got)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(got), hits / len(want)
    return 2 * precision * recall / (precision + recall)


_CHOICE = re.compile(r"\b([A-J])\b")


def chosen_letter(answer: str) -> str | None:
    """The option letter an answer picks: "(B)", "B.", "Answer: B", "the answer is B"."""
    text = answer.strip()
    explicit = re.search(r"(?:answer|option|choice)\s*(?:is)?\s*[:\-]?\s*\(?([A-J])\b", text, re.I)
    if explicit:
        return explicit.group(1).upper()
    bare = _CHOICE.search(text)
    return None if bare is None else bare.group(1)


def choice(answer: str | None, gold: Any) -> float:
    if answer is None or too_long(answer, gold):
        return 0.0
    return 1.0 if chosen_letter(answer) == str(gold).upper() else 0.0


def exact(answer: str | None, gold: Any) -> float:
    if answer is None:
        return 0.0
    golds: Sequence[Any] = gold if isinstance(gold, list | tuple) else [gold]
    got = normalize(answer)
    for g in golds:
        want = normalize(str(g))
        if got == want:
            return 1.0
        # a short answer that names the gold as a whole phrase ("It is Lisbon.") counts
        if want and len(got.split()) <= len(want.split()) + 4 and f" {want} " in f" {got} ":
            return 1.0
    return 0.0


SCORERS: dict[str, Callable[[str | None, Any], float]] = {
    "contains": contains,
    "oolong": oolong,
    "pairs_f1": pairs_f1,
    "choice": choice,
    "exact": exact,
}


def score(scorer: str, answer: str | None, gold: Any) -> float:
    try:
        fn = SCORERS[scorer]
    except KeyError:
        raise ValueError(f"unknown scorer {scorer!r}; known: {', '.join(SCORERS)}") from None
    return fn(answer, gold)
