"""Held-out wordings: the same tasks asked in words the prompts were not written against.

Prompts tuned while looking at one generator's questions can fit the generator instead of the
task (issue 17's check: a gap above 0.15 between tuning and held-out scores says so). A
held-out run draws new seeds (``--seed``) and rewords every question here, from the task's own
parameters, so the gold is unchanged. Written after the v2 prompts, and never used to tune them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable

from recursor.bench.gen_oolong import LABELS
from recursor.bench.task import Task

SNIAH = [
    "Which special magic number does the text give for {key}?",
    "The text mentions a special magic number associated with {key}. What is that number?",
    "Find the special magic number of {key} in the text. What is it?",
]
MULTIHOP = {
    3: [
        "Which country is home to the headquarters of {person}'s employer?",
        "{person} works for a company. In what country is that company's head office?",
        "Where, by country, is the employer of {person} headquartered?",
    ],
    2: [
        "Which city is the head office of {person}'s employer in?",
        "{person} works for a company. In what city does that company have its headquarters?",
        "Name the city where the employer of {person} is headquartered. Which city is it?",
    ],
}
OOLONG_PREAMBLE = (
    "Every line of the context has the form 'Date: ... || User: ... || Instance: <question>'. "
    "An instance is a question, and its label says what type of answer it asks for: one of "
    + ", ".join(f"'{label}'" for label in LABELS)
    + ". No line states its label; decide each one by reading it. "
)
OOLONG = {
    "count": ["How many of the instances are labelled '{label}'?"],
    "most": ["Which label occurs most often? Reply with the label only."],
    "least": ["Which label occurs the fewest times? Reply with the label only."],
    "compare": [
        "Compared with the label '{b}', is the label '{a}' more common than, less common than, "
        "or the same frequency as it? Answer with one of: 'more common than', "
        "'less common than', 'same frequency as'."
    ],
    "user": ["Of the instances from user {user}, how many are labelled '{label}'?"],
    "dates": [
        "Between {start} and {end} (both included), how many instances are labelled '{label}'?"
    ],
}


def _day(iso: str) -> str:
    return f"{dt.date.fromisoformat(iso):%B %d, %Y}"


def _sniah(task: Task, rng: random.Random) -> str:
    return rng.choice(SNIAH).format(key=task.meta["key"])


def _multihop(task: Task, rng: random.Random) -> str:
    return rng.choice(MULTIHOP[task.meta["hops"]]).format(person=task.meta["person"])


def _oolong(task: Task, rng: random.Random) -> str:
    m = task.meta
    fields = {k: m.get(k) for k in ("label", "a", "b", "user")}
    if m["kind"] == "dates":
        fields.update(start=_day(m["from"]), end=_day(m["to"]))
    return OOLONG_PREAMBLE + rng.choice(OOLONG[m["kind"]]).format(**fields)


REWORD: dict[str, Callable[[Task, random.Random], str]] = {
    "sniah": _sniah,
    "multihop": _multihop,
    "oolong": _oolong,
}


def reword(task: Task, seed: int) -> Task:
    """``task`` with a held-out wording of its question (same context, same gold) and an id
    that says so, so its records never mix with the tuning run's."""
    if task.family not in REWORD:
        raise ValueError(f"no held-out wording for the family {task.family!r}")
    rng = random.Random(f"heldout:{seed}:{task.id}")
    query = REWORD[task.family](task, rng)
    return dataclasses.replace(task, id=f"{task.id}-heldout{seed}", query=query)
