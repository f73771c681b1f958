"""DepthPlan on its own: what llm_query and rlm_query do at each depth."""

from __future__ import annotations

import pytest

from recursor import RLM
from recursor.broker import DepthPlan, ItemResult
from recursor.broker.batch import response_of
from recursor.errors import ConfigurationError
from recursor.testing import ScriptedLM


@pytest.mark.parametrize(
    ("max_depth", "depth", "llm", "rlm"),
    [
        (0, 0, False, "none"),  # REPL only
        (1, 0, True, "plain"),  # rlm_query at the last level is one plain call
        (2, 0, True, "child"),
        (2, 1, True, "plain"),
        (3, 1, True, "child"),
        (3, 2, True, "plain"),
        (1, 1, False, "none"),  # below the last level (no REPL runs there)
    ],
)
def test_modes_by_depth(max_depth: int, depth: int, llm: bool, rlm: str) -> None:
    plan = DepthPlan(max_depth)
    assert plan.llm_query(depth) is llm
    assert plan.rlm_query(depth) == rlm
    assert plan.mode(depth, "llm") == ("plain" if llm else "none")


def test_refusal_names_the_function_and_the_limit() -> None:
    message = DepthPlan(0).refusal(0, "rlm")
    assert message.startswith("rlm_query is not available at depth 0")
    assert "max_depth=0 (REPL only)" in message


def test_negative_max_depth_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_depth"):
        DepthPlan(-1)
    with pytest.raises(ConfigurationError, match="max_depth"):
        RLM(ScriptedLM([]), max_depth=-1, environment="inprocess")


def test_the_prompt_and_the_broker_read_the_same_plan() -> None:
    # max_depth=0: the prompt offers no sub-calls and the broker refuses one made anyway
    root = ScriptedLM(["```repl\nprint(llm_query_batched(['a']))\n```", "FINAL(x)"])
    RLM(root, max_depth=0, environment="inprocess").completion("q", context="c")
    assert "llm_query(" not in root.calls[0][0]["content"]
    assert "llm_query is not available at depth 0" in root.calls[1][-1]["content"]


def test_items_become_the_wire_response() -> None:
    ok, failed = ItemResult(reply="a"), ItemResult()
    failed.fail("boom", "SubcallError")
    response = response_of([ok, failed])
    assert response.results == ["a", None]
    assert response.errors == [None, "boom"]
    assert response.error_types == [None, "SubcallError"]
    assert ok.done and failed.done and not ItemResult().done
