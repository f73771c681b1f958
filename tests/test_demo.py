from __future__ import annotations

import pytest

from recursor.demo import main, make_haystack


def test_haystack_has_exactly_one_needle() -> None:
    text, key, code = make_haystack(50_000, seed=3)
    assert len(text) >= 50_000
    assert text.count("access code") == 1 and f"{key} is {code}" in text


def test_scripted_demo_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--chars", "200000", "--model", "scripted"]) == 0
    out = capsys.readouterr().out
    assert "SCRIPTED" in out and "(correct)" in out and "iterations:  4" in out
