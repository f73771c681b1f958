"""Prompt versions (v2 falls back to v1, v1 stays selectable, both recorded) and the strategy
a question selects."""

from __future__ import annotations

import pytest

from recursor import RLM
from recursor.context import describe
from recursor.errors import ConfigurationError
from recursor.lm.profile import LMProfile
from recursor.prompts import (
    PROMPT_VERSION,
    PromptSettings,
    has_template,
    system_prompt,
    template,
)
from recursor.sandbox.repl import RESERVED
from recursor.strategy import classify
from recursor.testing import FunctionLM
from recursor.trace import RunStarted

META = describe("x" * 1000)


def test_v2_is_the_default_and_reads_what_it_lacks_from_v1() -> None:
    assert PROMPT_VERSION == "v2"
    # v2 holds no observation template: v1's serves it (so templates others add to v1 work too)
    assert template("observation", "v2").template == template("observation", "v1").template
    assert template("compact_system", "v2").template != template("compact_system", "v1").template
    assert has_template("way_count", "v2") and not has_template("way_count", "v1")
    with pytest.raises(FileNotFoundError):
        template("nothing_of_the_kind", "v2")
    with pytest.raises(ConfigurationError):
        template("observation", "v9")


def test_v2_advertises_the_helpers_and_v1_does_not() -> None:
    v2 = system_prompt(META, PromptSettings(30, 20_000, llm=True, rlm="child"))
    for name in RESERVED:
        assert f"`{name}" in v2, name
    none = system_prompt(META, PromptSettings(30, 20_000, llm=False, rlm="none"))
    assert "`grep(" in none and "`llm_map(" not in none
    v1 = system_prompt(META, PromptSettings(30, 20_000, llm=True, rlm="child", version="v1"))
    assert "`grep(" not in v1 and "`llm_map(" not in v1


@pytest.mark.parametrize(
    ("kind", "marker"),
    [
        ("lookup", 'grep("bob")'),
        ("chain", "the name to search for next"),
        ("read", "llm_query("),
        ("count", "llm_map("),
    ],
)
def test_the_compact_example_follows_the_kind(kind: str, marker: str) -> None:
    s = PromptSettings(12, 4_000, llm=True, rlm="plain", style="compact", kind=kind)  # type: ignore[arg-type]
    text = system_prompt(META, s)
    assert marker in text
    assert "$" not in text
    # a CPU model reads every token of it at every turn (2,100: the background and budget()
    # lines of issues 13 and 14 joined the helpers and the example)
    assert len(text) < 2_100
    assert (
        sum(m in text for m in ("PIN of user bob", "Dana Park", "spring fair", "reviews are bad"))
        == 1
    )


def test_without_llm_query_reading_and_counting_fall_back_to_the_lookup() -> None:
    s = PromptSettings(12, 4_000, llm=False, rlm="none", style="compact", kind="count")
    text = system_prompt(META, s)
    assert 'grep("bob")' in text and "llm_map" not in text and "llm_query" not in text


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("What is the access code for user-1234?", "lookup"),
        ("What PIN is assigned to team-5531? Answer with the number only.", "lookup"),
        ("In which city is the headquarters of the company that employs Ana Diaz?", "chain"),
        ("Where is the employer of Dana Smith based?", "chain"),
        ("Which floor is the office of the manager who hired Bo on?", "chain"),
        ("Why was the spring fair cancelled?", "read"),
        ("Summarize what the board decided.", "read"),
        ("How many of the messages are complaints?", "count"),
        ("Which label is the most common?", "count"),
    ],
)
def test_classify(question: str, kind: str) -> None:
    assert classify(question) == kind


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_version_and_kind_are_chosen_and_recorded(version: str) -> None:
    seen: list[str] = []

    def reply(messages: list[dict[str, str]]) -> str:
        seen.append(messages[0]["content"])
        return "FINAL(3)"

    root = FunctionLM(reply, name="local:tiny", profile=LMProfile(prompt_style="compact"))
    rlm = RLM(root, environment="inprocess", prompt_version=version)
    result = rlm.completion("How many refunds were there?", context="a\nb")
    [started] = result.trace.of(RunStarted)
    assert started.config["prompt_version"] == version
    assert started.config["prompt_kind"] == "count"
    assert ("llm_map(" in seen[0]) == (version == "v2")


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="prompt_version"):
        RLM(FunctionLM(lambda m: "x"), environment="inprocess", prompt_version="v0")
