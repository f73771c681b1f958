"""OOLONG-style aggregation: ``oolong`` (counts, frequencies, per user and date range) and
``oolong_pairs`` (pairs of users meeting label conditions).

Each context line is ``Date: ... || User: ... || Instance: <question text>``. An instance's label
is the kind of answer its question asks for (OOLONG-synth's TREC-coarse task): abbreviation,
entity, description and abstract concept, human being, location, numeric value. The text never
names its label, and the opening word does not decide it ("What city hosted…" is a location,
"What year…" numeric, "What is the name of the first person…" human), so the labels need
reading, not a regex; ``meta["items"]`` holds every line's latent label for checking the gold.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from recursor.bench.task import Task

LABELS = [
    "abbreviation",
    "entity",
    "description and abstract concept",
    "human being",
    "location",
    "numeric value",
]
_ABBR = ["NASA", "UNESCO", "DNA", "RSVP", "laser", "scuba", "radar", "OPEC", "HTML", "AWOL"]
_THING = [
    "the Eiffel Tower", "the Great Wall", "the printing press", "penicillin", "the telephone",
    "the Panama Canal", "the Mona Lisa", "the steam engine", "the Suez Canal",
    "the Hubble telescope",
]  # fmt: skip
_PLACE = [
    "Mount Kilimanjaro", "the Amazon river", "Lake Baikal", "the Sahara", "Machu Picchu",
    "the Dead Sea", "Angkor Wat", "the Galapagos Islands", "Timbuktu", "Petra",
]  # fmt: skip
_CONCEPT = [
    "inflation", "photosynthesis", "a solar eclipse", "democracy", "entropy", "a rainbow",
    "the tides", "jet lag", "inertia", "a placebo",
]  # fmt: skip
_TEMPLATES: dict[str, list[str]] = {
    "abbreviation": [
        "What does {abbr} stand for?",
        "What is the full form of {abbr}?",
        "{abbr} is short for what?",
        "What do the letters in {abbr} mean?",
    ],
    "entity": [
        "What material was used to build {thing}?",
        "What instrument is {thing} usually compared to?",
        "Which animal appears on the flag shown near {place}?",
        "What kind of tree grows around {place}?",
        "What is the name of the ship that sailed to {place}?",
    ],
    "description and abstract concept": [
        "Why does {concept} happen?",
        "How does {concept} work?",
        "What is the meaning of {concept}?",
        "What causes {concept}?",
        "Can you explain {concept} in simple terms?",
    ],
    "human being": [
        "Who designed {thing}?",
        "Which engineer is credited with {thing}?",
        "What was the name of the first person to reach {place}?",
        "Who led the first expedition to {place}?",
    ],
    "location": [
        "Where is {place}?",
        "What country is home to {thing}?",
        "Which city hosted the opening of {thing}?",
        "In which region can {place} be found?",
    ],
    "numeric value": [
        "How tall is {thing}?",
        "What year was {thing} completed?",
        "How many people visit {place} each year?",
        "How far is {place} from the nearest city?",
        "What is the average temperature at {place}?",
    ],
}  # fmt: skip


def instance(rng: random.Random, label: str) -> str:
    return rng.choice(_TEMPLATES[label]).format(
        abbr=rng.choice(_ABBR),
        thing=rng.choice(_THING),
        place=rng.choice(_PLACE),
        concept=rng.choice(_CONCEPT),
    )


def _lines(rng: random.Random, length: int, users: int) -> list[dict[str, Any]]:
    """Items until the context reaches ``length`` estimated tokens; users favour a few labels."""
    ids = [str(u) for u in rng.sample(range(10000, 99999), users)]
    favourites = {u: rng.sample(LABELS, 2) for u in ids}
    # skewed label weights, so that frequencies differ and "most common" has one answer
    weights = [rng.uniform(0.5, 3.0) for _ in LABELS]
    start = dt.date(2023, 1, 1)
    items: list[dict[str, Any]] = []
    chars = 0
    while chars < length * 4 or len(items) < 8:
        user = rng.choice(ids)
        if rng.random() < 0.5:
            label = rng.choice(favourites[user])
        else:
            label = rng.choices(LABELS, weights)[0]
        day = start + dt.timedelta(days=rng.randrange(730))
        text = instance(rng, label)
        item = {"date": day.isoformat(), "user": user, "text": text, "label": label}
        items.append(item)
        chars += len(line(item)) + 1
    items.sort(key=lambda it: it["date"])
    return items


def line(item: dict[str, Any]) -> str:
    day = dt.date.fromisoformat(item["date"])
    return f"Date: {day:%b %d, %Y} || User: {item['user']} || Instance: {item['text']}"


_PREAMBLE = (
    "The context is a list of lines 'Date: ... || User: ... || Instance: <question>'. Each "
    "instance is a question; its label is the type of answer the question asks for, one of: "
    + ", ".join(f"'{label}'" for label in LABELS)
    + ". The labels are not written in the context; judge each instance yourself. "
)


def _question(
    rng: random.Random, items: list[dict[str, Any]]
) -> tuple[str, str, Any, dict[str, Any]]:
    """(kind, question, gold, the question's parameters)."""
    counts = Counter(it["label"] for it in items)
    present = [label for label in LABELS if counts[label]]
    kind = rng.choice(["count", "most", "least", "compare", "user", "dates"])
    freq = sorted(present, key=lambda label: counts[label])
    if kind in ("most", "least") and len({counts[label] for label in present}) < len(present):
        kind = "count"  # a tie has no single answer
    if kind == "count":
        label = rng.choice(LABELS)
        return (
            kind,
            f"How many instances have the label '{label}'?",
            counts[label],
            {"label": label},
        )
    if kind == "most":
        return kind, "Which label is the most common? Answer with the label only.", freq[-1], {}
    if kind == "least":
        return kind, "Which label is the least common? Answer with the label only.", freq[0], {}
    if kind == "compare":
        a, b = rng.sample(LABELS, 2)
        rel = (
            "more common than"
            if counts[a] > counts[b]
            else ("less common than" if counts[a] < counts[b] else "same frequency as")
        )
        q = (
            f"Is the label '{a}' more common than, less common than, or the same frequency as "
            f"the label '{b}'? Answer with one of: 'more common than', 'less common than', "
            "'same frequency as'."
        )
        return kind, q, rel, {"a": a, "b": b}
    label = rng.choice(LABELS)
    if kind == "user":
        user = rng.choice(items)["user"]
        n = sum(1 for it in items if it["user"] == user and it["label"] == label)
        q = f"How many instances from user {user} have the label '{label}'?"
        return kind, q, n, {"user": user, "label": label}
    days = sorted(rng.sample([it["date"] for it in items], 2))
    lo, hi = days[0], days[-1]
    n = sum(1 for it in items if lo <= it["date"] <= hi and it["label"] == label)
    q = (
        f"How many instances dated from {dt.date.fromisoformat(lo):%b %d, %Y} to "
        f"{dt.date.fromisoformat(hi):%b %d, %Y} (inclusive) have the label '{label}'?"
    )
    return kind, q, n, {"label": label, "from": lo, "to": hi}


def oolong(rng: random.Random, index: int, length: int) -> Task:
    items = _lines(rng, length, users=max(4, min(40, length // 400)))
    kind, query, gold, params = _question(rng, items)
    return Task(
        id=f"oolong-{length}-{index}",
        family="oolong",
        context="\n".join(line(it) for it in items),
        query=_PREAMBLE + query,
        gold=gold,
        scorer="oolong",
        length=length,
        meta={"items": items, "kind": kind, **params},
        oracle={"kind": kind, **params, "labels": LABELS},
    )


# -- pairs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PairRule:
    """The condition a pair of users must meet: ``kind`` over labels ``p`` and ``q``."""

    kind: str
    p: str
    q: str
    k: int

    def holds(self, cu: Counter[str], cv: Counter[str]) -> bool:
        p, q = self.p, self.q
        if self.kind == "both_either":
            return (cu[p] + cu[q] >= 1) and (cv[p] + cv[q] >= 1)
        if self.kind == "both_at_least":
            return cu[p] >= self.k and cv[p] >= self.k
        # "one_each": one user has p and the other has q, in either order
        return (cu[p] >= 1 and cv[q] >= 1) or (cu[q] >= 1 and cv[p] >= 1)


def oolong_pairs(rng: random.Random, index: int, length: int) -> Task:
    users = max(5, min(16, length // 500))
    items = _lines(rng, length, users=users)
    kind = rng.choice(["both_either", "both_at_least", "one_each"])
    p, q = rng.sample(LABELS, 2)
    k = 2
    profile: dict[str, Counter[str]] = {}
    for it in items:
        profile.setdefault(it["user"], Counter())[it["label"]] += 1
    rule = _PairRule(kind, p, q, k)
    gold = [
        [u, v] for u, v in combinations(sorted(profile), 2) if rule.holds(profile[u], profile[v])
    ]
    condition = {
        "both_either": f"both users have at least one instance with the label '{p}' or '{q}'",
        "both_at_least": f"both users have at least {k} instances with the label '{p}'",
        "one_each": (
            f"one user has at least one instance with the label '{p}' and the other has at "
            f"least one instance with the label '{q}'"
        ),
    }[kind]
    query = (
        _PREAMBLE + f"List all pairs of user IDs where {condition}. Write each pair as "
        "(lower ID, higher ID), each pair once, separated by newlines."
    )
    return Task(
        id=f"oolong_pairs-{length}-{index}",
        family="oolong_pairs",
        context="\n".join(line(it) for it in items),
        query=query,
        gold=gold,
        scorer="pairs_f1",
        length=length,
        meta={"items": items, "kind": kind, "p": p, "q": q, "k": k},
        oracle={"kind": kind, "p": p, "q": q, "k": k, "labels": LABELS},
    )
