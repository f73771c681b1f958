"""The methods on fakes: the oracle scores 100% everywhere; the baselines do what they claim."""

from __future__ import annotations

import re

import pytest

from recursor.bench import FAMILIES, generate
from recursor.bench.methods import CHARS_PER_TOKEN, Models, chunks, usable
from recursor.bench.oracle import label_lookup_lm, program
from recursor.bench.registry import method
from recursor.limits import Limits
from recursor.lm.base import Message
from recursor.testing import FunctionLM, ScriptedLM


@pytest.mark.parametrize("environment", ["inprocess", "subprocess"])
@pytest.mark.parametrize("family", FAMILIES)
def test_oracle_scores_everything(family: str, environment: str) -> None:
    tasks = [t for n in (600, 6000) for t in generate(family, n=3, length=n, seed=11)]
    sub = label_lookup_lm(tasks)
    models = Models(root=ScriptedLM([]), sub=sub, environment=environment)
    for t in tasks:
        attempt = method("oracle").run(t, models)
        assert attempt.error is None, attempt.error
        assert attempt.stop_reason == "final"
        assert t.score(attempt.answer) == 1.0, (t.id, attempt.answer, t.gold)
        if family.startswith("oolong"):
            # the labels came from the sub-model, through llm_query_batched, in batches of 25
            assert attempt.subcalls >= 1
            assert attempt.usage.calls == attempt.subcalls
        else:
            assert attempt.subcalls == 0


def test_oracle_with_a_bad_sub_model_fails_cleanly() -> None:
    [t] = generate("oolong", n=1, length=2000, seed=1)
    models = Models(root=ScriptedLM([]), sub=FunctionLM(lambda m: "?"), environment="inprocess")
    attempt = method("oracle").run(t, models)
    # unlabelled instances: a wrong or failed answer, never a crash or a hang
    assert attempt.stop_reason == "final"
    assert t.score(attempt.answer) < 1.0 or attempt.error is not None


def test_oracle_programs_do_not_embed_the_answer() -> None:
    for family in FAMILIES:
        for t in generate(family, n=3, length=3000, seed=5):
            src = program(t)
            if family in ("oolong", "oolong_pairs"):
                assert repr(t.gold) not in src or isinstance(t.gold, int)
                assert "items" not in src
            if family == "multihop":
                assert repr(t.gold) not in src


def _needle_reader(messages: list[Message]) -> str:
    """A fake model that can read: it repeats the needle sentence when it sees one."""
    found = re.search(
        r"One of the special magic numbers for [\w-]+ is: \d+\.", messages[-1]["content"]
    )
    return found.group(0) if found else "not in this part"


def test_direct_cuts_to_the_window() -> None:
    seen: list[int] = []

    def fn(messages: list[Message]) -> str:
        seen.append(len(messages[-1]["content"]))
        return _needle_reader(messages)

    lm = FunctionLM(fn)
    [t] = generate("sniah", n=1, length=20_000, seed=2)
    models = Models(root=lm, sub=lm, window_tokens=4096)
    attempt = method("direct").run(t, models)
    assert attempt.usage.calls == 1 and attempt.subcalls == 0
    assert seen[0] <= usable(4096) * CHARS_PER_TOKEN + len(t.query) + 100
    # a needle past the cut is lost; one inside it is found
    in_window = t.context.index(t.gold) < usable(4096) * CHARS_PER_TOKEN
    assert t.score(attempt.answer) == (1.0 if in_window else 0.0)


def test_chunks_cover_the_text_in_order() -> None:
    text = "\n".join(f"line {i} " + "x" * (i % 50) for i in range(2000))
    parts = chunks(text, 300)
    assert "".join(parts) == text
    assert all(len(p) <= 300 * CHARS_PER_TOKEN for p in parts)
    assert all(p.endswith("\n") for p in parts[:-1])  # cut at line ends


def test_summarize_splits_merges_and_answers() -> None:
    calls: list[str] = []

    def fn(messages: list[Message]) -> str:
        calls.append(messages[0]["content"][:20])
        return _needle_reader(messages)

    lm = FunctionLM(fn)
    [t] = generate("sniah", n=1, length=30_000, seed=3)
    attempt = method("summarize").run(t, Models(root=lm, sub=lm, window_tokens=4096))
    parts = len(chunks(t.context, usable(4096)))
    assert attempt.subcalls >= parts  # one summary per chunk (plus merges if needed)
    assert attempt.usage.calls == attempt.subcalls + 1
    assert t.score(attempt.answer) == 1.0


def test_bm25_retrieves_the_needle_passage() -> None:
    got: list[str] = []

    def fn(messages: list[Message]) -> str:
        got.append(messages[-1]["content"])
        return _needle_reader(messages)

    lm = FunctionLM(fn)
    for t in generate("sniah", n=3, length=40_000, seed=4):
        attempt = method("bm25").run(t, Models(root=lm, sub=lm, window_tokens=2048))
        assert len(got[-1]) < 2048 * CHARS_PER_TOKEN + 500  # only the best passages went
        assert t.score(attempt.answer) == 1.0


def test_compaction_reads_every_part_in_order() -> None:
    parts_seen: list[str] = []

    def fn(messages: list[Message]) -> str:
        text = messages[-1]["content"]
        if "Next part:" in text:
            parts_seen.append(text.split("Next part:\n", 1)[1])
            notes = text.split("Notes so far:\n", 1)[1].split("\n\nNext part:", 1)[0]
            value = _needle_reader(messages)
            return value if "magic" in value else notes
        return text.split("Notes:\n", 1)[1].split("\n\nQuestion:", 1)[0]

    lm = FunctionLM(fn)
    [t] = generate("sniah", n=1, length=20_000, seed=5)
    attempt = method("compaction").run(t, Models(root=lm, sub=lm, window_tokens=2048))
    assert "".join(parts_seen) == t.context
    assert t.score(attempt.answer) == 1.0


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_rlm_methods_report_usage_and_subcalls(depth: int) -> None:
    [t] = generate("sniah", n=1, length=2000, seed=6)
    code = "```repl\nfound = llm_query('say 5')\n```" if depth else "```repl\nfound = '5'\n```"
    root = ScriptedLM([code, "FINAL_VAR(found)"], name="root")
    sub = FunctionLM(lambda m: "5", name="sub")
    models = Models(root=root, sub=sub, environment="inprocess", limits=Limits(max_iterations=4))
    attempt = method(f"rlm-d{depth}").run(t, models)
    assert attempt.answer == "5" and attempt.stop_reason == "final"
    assert attempt.iterations == 2
    assert attempt.subcalls == (1 if depth else 0)
    assert attempt.usage.calls == 2 + attempt.subcalls


def test_unknown_method() -> None:
    from recursor.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown method"):
        method("nope")


def test_oracle_refuses_loaded_tasks() -> None:
    from pathlib import Path

    from recursor.bench.loaders import load_longbench_v2

    [t, *_] = load_longbench_v2(Path(__file__).parent / "fixtures" / "longbench_v2.json")
    with pytest.raises(ValueError, match="no oracle parameters"):
        program(t)


def test_oracle_cell_may_take_the_whole_task_time() -> None:
    """The oracle's one cell makes every sub-call: a per-cell limit must not cut it off."""
    import time

    [t] = generate("oolong", n=1, length=6000, seed=2)
    lookup = label_lookup_lm([t])

    def slow(messages: list[Message]) -> str:
        time.sleep(0.15)
        return lookup.complete(messages).text

    models = Models(
        root=ScriptedLM([]),
        sub=FunctionLM(slow),
        environment="inprocess",
        limits=Limits(cell_timeout_s=0.3, timeout_s=60),
        concurrency=1,
    )
    attempt = method("oracle").run(t, models)
    assert attempt.subcalls >= 4  # sequential: well past the 0.3 s cell limit
    assert attempt.error is None and t.score(attempt.answer) == 1.0
