"""The answer-shape check: the shapes read from questions, and one corrective observation."""

from __future__ import annotations

import pytest

from recursor import RLM
from recursor.answer_shape import expected, review
from recursor.testing import ScriptedLM

from .conftest import code


@pytest.mark.parametrize(
    ("question", "shape"),
    [
        ("What is the special magic number for amber-x mentioned in the text?", "number"),
        ("How many instances have the label 'entity'?", "number"),
        ("Is the shop open on Sundays?", "yes/no"),
        ("Is it red or blue?", None),
        ("Who founded Acme?", "value"),
        ("Why did the launch fail?", None),
        ("List all the cities.", None),
        ("Count the refunds", None),
        ("Summarize the report.", None),
        ("Is A more common than B? Answer with one of: 'more', 'less', 'same'.", "choice"),
        # a preamble describing the data says nothing of the answer's shape
        ("Each line has one of: 'x', 'y'. Judge each one. How many are 'x'?", "number"),
    ],
)
def test_expected_shapes(question: str, shape: str | None) -> None:
    got = expected(question)
    assert (got.shape if got else None) == shape


@pytest.mark.parametrize(
    ("question", "good", "bad"),
    [
        ("What is the magic number for k?", "7421337", "The magic number for k is given below."),
        ("What is the magic number for k?", "7421337", "x " * 40 + "7421337"),
        ("Is it open?", "Yes, on Sundays.", "It is open."),
        ("Pick? Answer with one of: 'up', 'down'.", "down", "up or down"),
        ("Who wrote it?", "Ada Lovelace", "Ada wrote it. " * 30),
    ],
)
def test_review_passes_the_value_and_names_the_problem(question: str, good: str, bad: str) -> None:
    assert review(question, good) is None
    note = review(question, bad)
    assert note is not None and "not accepted" in note
    assert len(note) < 700  # a preview of the answer, never the whole of it


@pytest.mark.parametrize(
    "question",
    [
        "What is the special magic number for k? Answer with the number only.",
        "What was the vault password of k changed to? Give just the number.",
        "Reply with only the number: how many rows are there?",
    ],
)
def test_the_number_only_means_nothing_around_it(question: str) -> None:
    want = expected(question)
    assert want is not None and want.shape == "number" and want.only
    for good in ("2730838", "2730838.", " 1,204 ", "-3.5", "12%"):
        assert review(question, good) is None, good
    for bad in ("2730838 yesterday.", "k: 2730838", "about 12", "The number is 7."):
        note = review(question, bad)
        assert note is not None and "the number only" in note, bad
    # without the instruction a few words may come with a number
    assert review("How long did the trip take?", "about 12 days") is None


def test_a_line_for_a_number_is_sent_back_once_then_the_value_is_accepted() -> None:
    line = "One of the special magic numbers for amber-x is: 7421337."
    root = ScriptedLM(
        [
            code("hits = grep('amber-x')\nresult = hits[0]\nFINAL_VAR('result')"),
            code("import re\nvalue = re.findall(r'\\d+', result)[0]\nFINAL_VAR('value')"),
        ]
    )
    rlm = RLM(root, environment="inprocess")
    result = rlm.completion(
        "What is the special magic number for amber-x?", context="Filler text. " * 50 + line
    )
    assert result.answer == "7421337"
    assert result.stop_reason == "final" and result.iterations == 2
    sent_back = root.calls[1][-1]["content"]
    assert "not accepted" in sent_back and "asks for a number" in sent_back
    root.assert_complete()


def test_for_the_number_only_the_one_number_in_the_answer_is_offered_back() -> None:
    q = "What was the vault password of k changed to? Answer with the number only."
    root = ScriptedLM(["FINAL(2730838 yesterday.)", "The value alone.\nFINAL(2730838)"])
    result = RLM(root, environment="inprocess").completion(q, context="x")
    assert (result.answer, result.iterations) == ("2730838", 2)
    sent_back = root.calls[1][-1]["content"]
    assert "the number only" in sent_back and "this line:\nFINAL(2730838)\n" in sent_back
    root.assert_complete()
    # a code such as agent-2033 is not a number of the answer; two numbers offer nothing
    note = review(q, "The number for agent-2033 is: 5279348.")
    assert note is not None and note.endswith("\nFINAL(5279348)")
    note = review(q, "either 12 or 14")
    assert note is not None and "The number in it" not in note


def test_the_second_final_answer_is_accepted_whatever_its_shape() -> None:
    root = ScriptedLM(["FINAL(no idea at all)", "FINAL(still no idea)"])
    result = RLM(root, environment="inprocess").completion("How many refunds?", context="x")
    assert (result.answer, result.iterations) == ("still no idea", 2)


def test_a_question_without_an_obvious_shape_is_never_sent_back() -> None:
    root = ScriptedLM(["FINAL(" + "because " * 100 + ")"])
    result = RLM(root, environment="inprocess").completion("Why did it fail?", context="x")
    assert result.iterations == 1 and result.answer is not None
