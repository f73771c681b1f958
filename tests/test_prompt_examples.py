"""The compact prompt's worked examples are programs a small root copies line for line: each one
is run here, turn by turn, as the root's replies, against a context the example's outputs
describe, so an example that no longer runs (a helper renamed, a signature changed) or that
gives the wrong value fails here, not in an hour-long embedded-model run."""

from __future__ import annotations

import re

import pytest

from recursor import RLM
from recursor.prompts import template
from recursor.testing import FunctionLM
from recursor.trace import CellRan

REVIEWS = "\n".join(
    ["Great value, works well.", "Awful, broke in a day.", "Good.", "Awful support.", "Fine."]
)

CASES = {
    # kind: (context, the sub-model's reply to one prompt, the right answer)
    "lookup": (
        "bob logged in at 09:12.\nnote: the PIN for bob is now 4471, set by admin.\n",
        lambda prompt: "",
        "4471",
    ),
    "chain": (
        "Dana Park never worked with Tom Lee. Dana Park reports to her manager, Ravi Shah. "
        "The office of Ravi Shah is on floor 7.",
        lambda prompt: "",
        "7",
    ),
    "read": (
        "Tickets sold out in May.\nThe spring fair was called off because the park was flooded.",
        lambda prompt: "The park was flooded." if "flooded" in prompt else "unknown",
        "The park was flooded.",
    ),
    "count": (
        REVIEWS,
        lambda prompt: "Bad." if "Awful" in prompt.rsplit("\n", 1)[-1] else "good",
        "2",
    ),
}


def turns(kind: str) -> list[str]:
    text = template(f"way_{kind}", "v2").template
    return [f"```repl\n{code}```" for code in re.findall(r"```repl\n(.*?)```", text, re.S)]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_worked_example_runs_and_answers(kind: str) -> None:
    context, sub_reply, answer = CASES[kind]
    replies = turns(kind)
    assert len(replies) >= 2
    root = FunctionLM(lambda messages: replies.pop(0))
    sub = FunctionLM(lambda messages: sub_reply(messages[-1]["content"]))
    with RLM(root, sub, environment="inprocess") as rlm:
        result = rlm.completion("the example's question", context=context)
    ran = [(c.code, c.stdout, c.error) for c in result.trace.of(CellRan)]
    assert result.answer == answer, (result.error, ran)
    assert not replies  # every turn of the example ran, the last one finished
