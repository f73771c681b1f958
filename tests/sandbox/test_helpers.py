"""recursor.sandbox.helpers as plain functions (the contract suite runs them in every sandbox)."""

from __future__ import annotations

import pytest

from recursor.sandbox import helpers


def test_a_long_line_narrows_to_the_sentence_and_stays_bounded() -> None:
    words = "word " * 5000  # no sentence end anywhere near the match
    text = f"Intro. {words}KEY=42 {words}"
    (hit,) = helpers.grep("key=", text)
    assert "KEY=42" in hit
    assert len(hit) <= 2 * helpers.SIDE_CHARS + len("KEY=")
    assert text[hit.pos : hit.pos + 4] == "KEY="


def test_one_hit_per_line_and_dict_items() -> None:
    assert helpers.grep("a", "aaa\nbab") == ["aaa", "bab"]
    hits = helpers.grep("x", {"f.py": "x = 1", "g.py": "y = 2"})
    assert [(str(h), h.item) for h in hits] == [("x = 1", "f.py")]


def test_chunks_of_text_cut_at_sentence_ends_and_lose_nothing() -> None:
    text = "".join(f"Sentence number {i} ends here. " for i in range(50))
    parts = helpers.chunks(text, 100)
    assert "".join(parts) == text
    assert all(len(p) <= 100 for p in parts)
    assert all(p.endswith(".") for p in parts[:-1])
    with pytest.raises(ValueError, match="size"):
        helpers.chunks(text, 0)


def test_fill_uses_only_the_item_slot() -> None:
    assert helpers.fill('{"a": 1} {item}', "x") == '{"a": 1} x'
    assert helpers.fill("Label:", ["l1", "l2"]) == "Label:\n\nl1\nl2"
