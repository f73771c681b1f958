"""A turn that re-runs the last turn's failing code is told so (a small root loops on it)."""

from __future__ import annotations

from recursor import RLM
from recursor.testing import ScriptedLM

from .conftest import code

FAILING = "import re\nvalue = re.search(r'amber-x is (\\d+)', context).group(1)\nprint(value)"
NOTE = "same as your last turn's, and it failed again"


def test_the_same_failing_cell_twice_is_pointed_out_on_the_second_time_only() -> None:
    root = ScriptedLM([code(FAILING), code(FAILING), code(FAILING), "FINAL(7421337)"])
    result = RLM(root, environment="inprocess").completion(
        "What is the code for amber-x?", context="The code for amber-x is: 7421337."
    )
    assert result.answer == "7421337"
    first, second, third = (root.calls[i][-1]["content"] for i in (1, 2, 3))
    assert "AttributeError" in first and NOTE not in first
    assert NOTE in second and NOTE in third
    root.assert_complete()


def test_a_repeated_cell_that_works_or_a_changed_one_is_not_pointed_out() -> None:
    works = "print(len(context))"
    fixed = "import re\nprint(re.search(r'amber-x is: (\\d+)', context).group(1))"
    root = ScriptedLM([code(works), code(works), code(FAILING), code(fixed), "FINAL(7421337)"])
    RLM(root, environment="inprocess").completion(
        "What is the code for amber-x?", context="The code for amber-x is: 7421337."
    )
    assert not any(NOTE in call[-1]["content"] for call in root.calls[1:])
    root.assert_complete()
