"""Routing (issue 14, point 5): the auto rule, released policies, the cost circuit breaker and
its summarization fallback, ``result.route``; with fakes and the stub server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recursor import RLM, Limits
from recursor.baseline import ANSWER_SYSTEM, SUMMARY_SYSTEM
from recursor.errors import NoProgress
from recursor.lm.base import LMProfile, Message
from recursor.lm.stub_server import StubServer
from recursor.routing import Bars, load_policy, release
from recursor.routing.classify import parse
from recursor.sandbox.state import fingerprint
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import LimitHit, RunStarted
from recursor.usage import Pricing
from tests.conftest import code

ENVS = ["inprocess", "subprocess"]
WINDOW = LMProfile(context_window=4096)
SHORT = "Notes. The access code is 4821. More notes."
LONG = "\n".join(f"user {i}: likes topic {i % 7}" for i in range(6000))  # ~150k chars


def classifier(word: str) -> Callable[[list[Message]], str]:
    """A sub-model that classifies every question as ``word`` (and says so in a sentence)."""

    def reply(messages: list[Message]) -> str:
        assert "constant, linear or quadratic" in messages[-1]["content"]
        return f"This one is {word}."

    return reply


def test_auto_takes_direct_for_a_short_lookup() -> None:
    root = FunctionLM(lambda m: "4821" if m[0]["content"] == ANSWER_SYSTEM else "?", profile=WINDOW)
    sub = FunctionLM(classifier("constant"))
    with RLM(root, sub, environment="inprocess", route="auto") as rlm:
        result = rlm.completion("What is the access code?", SHORT)
    assert result.ok and result.answer == "4821"
    assert result.route is not None and result.route.route == "direct"
    assert result.route.complexity == "constant" and "fits" in result.route.reason
    assert root.calls == 1 and sub.calls == 1
    assert result.usage.total.calls == 2  # the classification call is in the usage


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize(("max_depth", "depth"), [(1, 1), (2, 2)])
def test_auto_takes_recursive_for_pairs_over_a_long_context(
    env: str, max_depth: int, depth: int
) -> None:
    root = ScriptedLM([code("FINAL(str(len(context)))")], profile=WINDOW)
    sub = FunctionLM(classifier("quadratic"))
    with RLM(root, sub, environment=env, route="auto", max_depth=max_depth) as rlm:
        result = rlm.completion("Which pairs of users like the same topic?", LONG)
    assert result.ok and result.answer == str(len(LONG))
    assert result.route is not None
    assert (result.route.route, result.route.depth) == ("recursive", depth)
    assert result.route.complexity == "quadratic" and "does not fit" in result.route.reason
    # the run really was an RLM at that depth
    assert result.trace.of(RunStarted)[0].config["max_depth"] == depth


def test_auto_rule_table() -> None:
    from recursor.routing import route_for

    assert route_for("constant", False, 1).route == "repl"
    assert (route_for("linear", False, 3).route, route_for("linear", False, 3).depth) == (
        "recursive",
        1,
    )
    assert route_for("linear", True, 1).route == "direct"
    assert route_for("quadratic", True, 2).depth == 1
    assert parse("QUADRATIC") == ("quadratic", False)
    assert parse("no idea") == ("linear", True)


def test_unknown_window_never_goes_direct() -> None:
    root = ScriptedLM([code("FINAL('x')")])  # a fake's window is unknown
    with RLM(root, FunctionLM(classifier("constant")), environment="inprocess", route="auto") as r:
        result = r.completion("code?", SHORT)
    assert result.route is not None and result.route.route == "repl"


def _rec(family: str, method: str, score: float, cost: float, secs: float) -> dict[str, Any]:
    return {
        "family": family,
        "length": 1000,
        "method": method,
        "score": score,
        "cost_usd": cost,
        "latency_s": secs,
        "input_tokens": 100,
        "output_tokens": 10,
        "error": None,
    }


def _results(tmp_path: Path) -> Path:
    records = []
    for _ in range(5):
        records += [
            # lookups: direct clears every bar and is cheapest
            _rec("sniah", "direct", 1.0, 0.01, 2),
            _rec("sniah", "rlm-d0", 1.0, 0.05, 5),
            _rec("sniah", "rlm-d1", 1.0, 0.08, 8),
            # counts: direct scores too low, rlm-d0 is too slow, rlm-d1 clears
            _rec("oolong", "direct", 0.2, 0.01, 2),
            _rec("oolong", "rlm-d0", 0.95, 0.05, 20),
            _rec("oolong", "rlm-d1", 0.95, 0.10, 9),
            _rec("oolong", "summarize", 1.0, 0.0, 1),  # not a route: ignored
            # pairs: nothing clears (low score, or too dear)
            _rec("oolong_pairs", "rlm-d1", 0.5, 0.10, 9),
            _rec("oolong_pairs", "rlm-d2", 0.95, 0.50, 11),
        ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"records": records, "cells": [], "config": {}}))
    return path


def test_a_policy_released_from_results_has_exactly_the_expected_routes(tmp_path: Path) -> None:
    from recursor.cli import app

    results = _results(tmp_path)
    out = tmp_path / "policy.json"
    res = CliRunner().invoke(
        app,
        [
            "route", "release", str(results), "--min-score", "0.9", "--max-p95-cost", "0.30",
            "--max-p95-seconds", "12", "--out", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    policy = json.loads(out.read_text())
    routes = {k: (v["route"], v["depth"]) for k, v in policy["classes"].items()}
    assert routes == {"constant": ("direct", None), "linear": ("recursive", 1)}
    fams = {k: v["method"] for k, v in policy["families"].items()}
    assert fams == {"sniah": "direct", "oolong": "rlm-d1"}
    text = res.output
    assert "class quadratic: no route cleared every bar" in text
    assert "score 0.200 < 0.9" in text
    assert "p95 latency 20.00 s > 12.0 s" in text
    assert "p95 cost $0.5000 > $0.3" in text
    assert "summarize" not in text
    # the same through the API
    _, decisions = release(json.loads(results.read_text())["records"], Bars(0.9, 0.30, 12))
    chosen = {d.group: d.chosen and d.chosen.method for d in decisions}
    assert chosen["class linear"] == "rlm-d1" and chosen["class quadratic"] is None


@pytest.mark.parametrize("env", ENVS)
def test_rlm_applies_a_released_policy(env: str, tmp_path: Path) -> None:
    policy, _ = release(json.loads(_results(tmp_path).read_text())["records"], Bars(0.9, 0.3, 12))
    path = tmp_path / "policy.json"
    path.write_text(policy.to_json())
    assert load_policy(path) == policy
    root = ScriptedLM([code("FINAL('7')")], profile=WINDOW)
    sub = FunctionLM(classifier("linear"))
    with RLM(root, sub, environment=env, route=path) as rlm:
        result = rlm.completion("How many users like topic 3?", SHORT)
    # a linear question over a context that fits: auto would go direct; the policy says d1
    assert result.ok and result.answer == "7"
    assert result.route is not None
    assert (result.route.route, result.route.depth) == ("recursive", 1)
    assert "released policy" in result.route.reason
    # a class the policy has no route for falls back to the auto rule, and says so
    root = ScriptedLM([code("FINAL('p')")], profile=WINDOW)
    with RLM(root, FunctionLM(classifier("quadratic")), environment=env, route=path) as rlm:
        result = rlm.completion("Which pairs?", LONG)
    assert result.route is not None and "no route for quadratic" in result.route.reason


def test_a_bad_policy_file_is_refused(tmp_path: Path) -> None:
    from recursor.errors import ConfigurationError

    bad = tmp_path / "p.json"
    bad.write_text('{"version": 1, "classes": {"constant": {"route": "teleport"}}}')
    with pytest.raises(ConfigurationError):
        RLM(ScriptedLM([]), environment="inprocess", route=bad)


# -- the cost circuit breaker ------------------------------------------------------------------

PRICED = Pricing(input_per_mtok=1000.0, output_per_mtok=1000.0)  # ~$0.001 a 1k-char turn


def looping_root(messages: list[Message]) -> str:
    """Plays the root: loops in the REPL without storing anything; answers the baseline."""
    if messages[0]["content"] == ANSWER_SYSTEM:
        return "from the summaries: 4821"
    return code("print(len(context))  # look again")


def summarizer(messages: list[Message]) -> str:
    if messages[0]["content"] == SUMMARY_SYSTEM:
        return "the code is 4821"
    return "linear"


@pytest.mark.parametrize("env", ENVS)
def test_breaker_trips_on_a_looping_model_and_falls_back(env: str) -> None:
    root = FunctionLM(looping_root, pricing=PRICED, profile=LMProfile(context_window=2048))
    sub = FunctionLM(summarizer, profile=LMProfile(context_window=2048))
    limits = Limits(max_cost_without_progress_usd=0.005, max_iterations=30, cell_timeout_s=10)
    with RLM(root, sub, environment=env, route="recursive", limits=limits) as rlm:
        result = rlm.completion("What is the code?", LONG[:20_000])
    assert result.ok and result.answer == "from the summaries: 4821"
    assert result.route is not None and result.route.fallback_after_usd is not None
    assert result.route.fallback_after_usd >= 0.005
    assert "summarization baseline" in result.route.reason
    hits = [e for e in result.trace.of(LimitHit) if e.limit == "max_cost_without_progress_usd"]
    assert len(hits) == 1
    assert result.iterations < 30  # it stopped well before the iteration budget
    # the fallback's calls are in the usage, besides the stopped run's
    assert result.usage.total.cost_usd is not None
    assert result.usage.total.cost_usd > result.route.fallback_after_usd


def test_breaker_without_routing_stops_with_no_progress() -> None:
    root = FunctionLM(looping_root, pricing=PRICED)
    limits = Limits(max_cost_without_progress_usd=0.005, cell_timeout_s=10)
    with RLM(root, environment="inprocess", limits=limits, max_depth=0) as rlm:
        result = rlm.completion("q", "x" * 5000)
    assert result.stop_reason == "no_progress" and isinstance(result.error, NoProgress)


def test_progress_resets_the_breaker() -> None:
    """A run whose cells keep adding variables spends freely (up to its other budgets)."""
    turns = iter(range(100))

    def busy(messages: list[Message]) -> str:
        i = next(turns)
        return code(f"v{i} = {i}") if i < 12 else code("FINAL('done')")

    root = FunctionLM(busy, pricing=PRICED)
    limits = Limits(max_cost_without_progress_usd=0.005, cell_timeout_s=10)
    with RLM(root, environment="inprocess", limits=limits, max_depth=0) as rlm:
        result = rlm.completion("q", "x" * 5000)
    assert result.ok and result.answer == "done"
    assert (result.usage.total.cost_usd or 0) > 0.005 * 3


def test_fingerprint_sees_new_and_changed_values() -> None:
    ns: dict[str, Any] = {"context": "c" * 100, "items": [1, 2]}
    skip = ("context",)
    a = fingerprint(ns, skip)
    assert fingerprint(ns, skip) == a
    ns["items"].append(3)
    b = fingerprint(ns, skip)
    assert b != a
    ns["n"] = 1
    assert fingerprint(ns, skip) != b
    ns["n"] = 1  # the same value again: no change
    c = fingerprint(ns, skip)
    assert fingerprint(ns, skip) == c
    ns["big"] = list(range(1_000_000))
    d = fingerprint(ns, skip)
    ns["big"][-1] = -1  # the tail is sampled
    assert fingerprint(ns, skip) != d


def test_typed_answer_on_the_direct_route_via_the_stub_server(
    stub_openai: Callable[..., StubServer],
) -> None:
    """Over the real OpenAI SDK: the classifier and the direct call, with one correction."""
    replies = iter(['{"code": "4821"}', '{"code": 4821}'])

    def handler(messages: list[dict[str, str]]) -> str:
        if "constant, linear or quadratic" in messages[-1]["content"]:
            return "constant"
        return next(replies)

    stub_openai(handler)
    with RLM(
        "openai:gpt-4o-mini",
        environment="subprocess",
        route="auto",
        context_windows={"gpt-4o-mini": 4096},
    ) as rlm:
        result = rlm.completion(
            "What is the access code?",
            SHORT,
            output_type={"type": "object", "properties": {"code": {"type": "integer"}}},
        )
    assert result.ok, result.error
    assert result.output == {"code": 4821}
    assert result.route is not None and result.route.route == "direct"
    assert result.usage.total.calls == 3


def test_cli_run_schema_prints_json(stub_openai: Callable[..., StubServer], tmp_path: Path) -> None:
    def handler(messages: list[dict[str, str]]) -> str:
        return "```repl\nFINAL({'n': len(context)})\n```"

    stub_openai(handler)
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "properties": {"n": {"type": "integer"}}}')
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("y" * 321)
    from recursor.cli import app

    res = CliRunner().invoke(
        app,
        ["run", "how long?", "-c", str(ctx), "-m", "openai:gpt-4o-mini", "--schema", str(schema),
         "--max-depth", "0", "-q"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"n": 321}
