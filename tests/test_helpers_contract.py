"""The REPL helpers (grep, chunks, llm_map) in every environment, on the fakes."""

from __future__ import annotations

import json

from recursor.testing import FunctionLM, ScriptedLM

from .conftest import code, make_rlm

# filler with no line break, as generated haystacks are: a "line" is the whole text
FILLER = "The committee met again and talked at length about the budget. " * 800
NEEDLE = "One of the special magic numbers for amber-lantern is: 7421337."


def test_grep_returns_a_bounded_window_with_positions(env: str) -> None:
    text = FILLER + NEEDLE + " " + FILLER
    root = ScriptedLM(
        [
            code(
                "hits = grep('amber-lantern')\n"
                "import json\n"
                "FINAL(json.dumps([[str(h), h.pos, h.item] for h in hits]))"
            )
        ]
    )
    result = make_rlm(env, root).completion("find the needle", context=text)
    hits = json.loads(result.answer or "null")
    assert hits == [[NEEDLE, text.index("amber-lantern"), None]]


def test_grep_lines_window_lists_and_literal_fallback(env: str) -> None:
    root = ScriptedLM(
        [
            code(
                "a = [str(h) for h in grep('BOB', window=1)]\n"
                "b = [(str(h), h.item) for h in grep('code (2', ['x', 'my code (2) is 9'])]\n"
                "import json\nFINAL(json.dumps([a, b]))"
            )
        ]
    )
    text = "alpha\nthe password for bob is h7x4\nomega\nlast"
    result = make_rlm(env, root).completion("q", context=text)
    a, b = json.loads(result.answer or "null")
    assert a == ["alpha\nthe password for bob is h7x4\nomega"]
    assert b == [["my code (2) is 9", 1]]


def test_chunks_and_llm_map_batch_over_llm_query_batched(env: str) -> None:
    seen: list[str] = []

    def label(messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        seen.append(prompt)
        return " YES \n" if "refund" in prompt else "no"

    items = [f"order {i}: {'refund' if i % 3 == 0 else 'paid'}" for i in range(10)]
    root = ScriptedLM(
        [
            code(
                "parts = chunks(context.splitlines(), 4)\n"
                "labels = llm_map('Money back? {item}', context.splitlines(), batch=3)\n"
                "FINAL(f\"{labels.count('YES')} {[len(p) for p in parts]}\")"
            )
        ]
    )
    sub = FunctionLM(label, name="labeller")
    result = make_rlm(env, root, sub).completion("how many refunds?", context="\n".join(items))
    assert result.answer == "4 [4, 4, 2]"
    assert sorted(seen) == sorted(f"Money back? {i}" for i in items)
    assert result.usage.by_model["labeller"].calls == 10


def test_helpers_are_protected_names(env: str) -> None:
    root = ScriptedLM(
        [code("grep = 1\nchunks = None"), code("FINAL(str(callable(grep) and callable(chunks)))")]
    )
    result = make_rlm(env, root).completion("q", context="x")
    assert result.answer == "True"
    assert "`grep` is protected" in root.calls[1][-1]["content"]
