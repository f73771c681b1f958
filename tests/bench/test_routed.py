"""The ``routed`` bench method: route="auto" on the bench's window, through the runner's record."""

from __future__ import annotations

import pytest

from recursor.bench import generate
from recursor.bench.methods import Models
from recursor.bench.registry import method
from recursor.lm.base import Message
from recursor.testing import FunctionLM


def _models(word: str, window: int) -> Models:
    def root(messages: list[Message]) -> str:
        if messages[0]["content"].startswith("Answer the question"):  # the direct route
            return "direct-answer"
        return "```repl\nFINAL('7777')\n```"

    def sub(messages: list[Message]) -> str:
        return word

    return Models(
        root=FunctionLM(root, name="root"),
        sub=FunctionLM(sub, name="sub"),
        window_tokens=window,
        environment="inprocess",
    )


@pytest.mark.parametrize(
    ("length", "word", "route", "answer"),
    [
        (300, "constant", "direct", "direct-answer"),  # fits the window: one call
        (
            4000,
            "constant",
            "repl",
            "7777",
        ),  # a lookup past the window: code (a bare number: no shape check)
        (4000, "linear", "recursive", "7777"),  # a count past the window: sub-calls
    ],
)
def test_routed_method_follows_the_route(length: int, word: str, route: str, answer: str) -> None:
    [task] = generate("sniah", n=1, length=length, seed=3)
    attempt = method("routed").run(task, _models(word, 2048))
    assert attempt.error is None, attempt.error
    assert attempt.answer == answer
    assert attempt.stop_reason == f"final via {route}"
    assert attempt.usage.calls == 2  # the classification call counts
