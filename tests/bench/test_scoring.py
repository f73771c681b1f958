"""The scorers on hand-made cases."""

from __future__ import annotations

import pytest

from recursor.bench import scoring
from recursor.bench.scoring import choice, contains, exact, oolong, pairs_f1, score


def test_contains() -> None:
    assert contains("the number is 7421337", "7421337") == 1.0
    assert contains("7421336", "7421337") == 0.0
    assert contains(None, "1") == 0.0


@pytest.mark.parametrize(
    ("answer", "gold", "want"),
    [
        ("12", 12, 1.0),
        ("Answer: 14", 12, 0.75**2),
        ("There are 1,005 instances", 1000, 0.75**5),
        ("no idea", 3, 0.0),
        ("Label: numeric value", "numeric value", 1.0),
        ("'numeric value'.", "numeric value", 1.0),
        ("location", "numeric value", 0.0),
        ("User: 44106", "44106", 1.0),
        ("more common than", "more common than", 1.0),
        ("'entity' is more common than 'location'", "more common than", 1.0),
        ("'entity' is less common than 'location'", "more common than", 0.0),
        ("more common than or less common than", "more common than", 0.0),
        (None, 3, 0.0),
    ],
)
def test_oolong(answer: str | None, gold: object, want: float) -> None:
    assert oolong(answer, gold) == pytest.approx(want)


def test_pairs_f1() -> None:
    gold = [["1", "2"], ["1", "3"], ["2", "3"], ["3", "4"]]
    assert pairs_f1("(1, 2)\n(1, 3)\n(2, 3)\n(3, 4)", gold) == 1.0
    assert pairs_f1("(2, 1), (3,1) (3, 2) (4, 3)", gold) == 1.0  # unordered, any spacing
    # 2 right of 3 given, 2 of 4 found: P=2/3, R=1/2
    assert pairs_f1("(1, 2) (1, 3) (5, 6)", gold) == pytest.approx(
        2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)
    )
    assert pairs_f1("(1, 2) (1, 2) (2, 1)", [["1", "2"]]) == 1.0  # duplicates count once
    assert pairs_f1("(7, 7)", []) == 1.0  # a self-pair is not a pair
    assert pairs_f1("nothing", gold) == 0.0
    assert pairs_f1(None, gold) == 0.0


@pytest.mark.parametrize(
    ("answer", "want"),
    [("B", 1.0), ("(B)", 1.0), ("The answer is B.", 1.0), ("Answer: (B) 42", 1.0), ("C", 0.0)],
)
def test_choice(answer: str, want: float) -> None:
    assert choice(answer, "B") == want
    assert choice(None, "B") == 0.0


def test_exact() -> None:
    assert exact("Lisbon", "Lisbon") == 1.0
    assert exact("  lisbon. ", "Lisbon") == 1.0
    assert exact("It is Port Avenmore.", "Port Avenmore") == 1.0
    assert (
        exact("Port Avenmore, or maybe Glen Calder, or Lake Dunmere, or else", "Port Avenmore")
        == 0.0
    )
    assert exact("Avenmore", "Port Avenmore") == 0.0
    assert exact("Paris", ["Paris", "City of Paris"]) == 1.0


def test_unknown_scorer() -> None:
    with pytest.raises(ValueError, match="unknown scorer"):
        score("nope", "a", "a")
    assert set(scoring.SCORERS) == {"contains", "oolong", "pairs_f1", "choice", "exact"}


@pytest.mark.parametrize("scorer", ["contains", "oolong", "choice"])
def test_lenient_scorers_refuse_an_answer_that_dumps_the_context(scorer: str) -> None:
    gold = {"contains": "9411959", "oolong": 4, "choice": "B"}[scorer]
    filler = "The orchestra talked at length about the autumn fair. " * 40
    dump = f"{filler}the answer is {gold} (B). {filler}"
    assert len(dump) > scoring.answer_bound(gold)
    assert scoring.score(scorer, dump, gold) == 0.0
    # the same sentence without the dump still scores
    assert scoring.score(scorer, f"The answer is {gold} (B).", gold) == 1.0


def test_answer_bound_is_200_chars_or_ten_golds() -> None:
    assert scoring.answer_bound("42") == 200
    long_gold = "x" * 50
    assert scoring.answer_bound(long_gold) == 500
    assert scoring.contains("y" * 400 + long_gold, long_gold) == 1.0  # 450 <= 500
    assert scoring.contains("y" * 199 + "42", "42") == 0.0  # 201 > 200
    assert scoring.contains("y" * 198 + "42", "42") == 1.0
