from __future__ import annotations

import pytest

from recursor.demo import main, needle_task


def test_needle_tasks_have_exactly_one_needle_and_vary() -> None:
    tasks = [needle_task(50_000, seed) for seed in range(10)]
    for t in tasks:
        assert len(t.context) >= 50_000
        assert t.context.count(t.key) == 1 and t.context.count(t.gold) == 1
        line = next(ln for ln in t.context.splitlines() if t.key in ln)
        assert t.gold in line and t.key in t.query
        assert t.correct(f"It is {t.gold}.") and not t.correct(
            "1234567" if t.gold != "1234567" else "0"
        )
    assert len({t.query.replace(t.key, "KEY") for t in tasks}) == 5  # 5 wordings
    assert any("INFO" in t.context[:200] for t in tasks)
    assert any("committee" in t.context[:300] for t in tasks)


def test_scripted_demo_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--chars", "200000", "--model", "scripted"]) == 0
    out = capsys.readouterr().out
    assert "SCRIPTED" in out and "(correct, the bare value)" in out and "iterations:  4" in out


def test_bare_means_the_value_alone_and_a_dump_is_not_correct() -> None:
    t = needle_task(20_000, 3)
    assert t.bare(t.gold) and t.bare(f" {t.gold}.") and not t.bare(f"It is {t.gold}.")
    assert t.correct(f"It is {t.gold}.") and not t.correct(t.context)
