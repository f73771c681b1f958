"""The reply parser and output truncation, by example and by property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from recursor.protocol import CappedText, clip, cut_marker, parse_reply, share


def test_fence_labels() -> None:
    for lang in ("repl", "python", "py", "Python", "python3"):
        assert parse_reply(f"```{lang}\nx = 1\n```").code_blocks == ["x = 1\n"]
    assert parse_reply("```bash\nls\n```").code_blocks == []
    assert parse_reply("```\nx = 1\n```").code_blocks == []


def test_several_blocks_in_order() -> None:
    reply = "a\n```repl\none()\n```\nb\n```python\ntwo()\n```\n"
    assert parse_reply(reply).code_blocks == ["one()\n", "two()\n"]


def test_final_forms() -> None:
    assert parse_reply("FINAL(42)").final.text == "42"  # type: ignore[union-attr]
    assert parse_reply('FINAL("Paris")').final.text == "Paris"  # type: ignore[union-attr]
    assert parse_reply("FINAL(the answer is f(x))").final.text == "the answer is f(x)"  # type: ignore[union-attr]
    assert parse_reply("**FINAL(7)**").final.text == "7"  # type: ignore[union-attr]
    assert parse_reply("  FINAL_VAR(result)").final == parse_reply("FINAL_VAR('result')").final
    var = parse_reply("FINAL_VAR(`result`)").final
    assert var is not None and var.kind == "var" and var.text == "result"


def test_final_nested_parens_quotes_and_lines() -> None:
    reply = 'Done.\nFINAL("a (b) \\"c)\\" d\nsecond line")\ntrailing'
    final = parse_reply(reply).final
    assert final is not None and final.text == 'a (b) "c)" d\nsecond line'
    multi = "FINAL(first line\n(second) line)\nafter"
    assert parse_reply(multi).final.text == "first line\n(second) line"  # type: ignore[union-attr]
    triple = "FINAL('''x ) y''')"
    assert parse_reply(triple).final.text == "x ) y"  # type: ignore[union-attr]


def test_final_must_start_a_line_and_sit_outside_code() -> None:
    assert parse_reply("I will call FINAL(x) later.").final is None
    assert parse_reply("```repl\n# FINAL(3)\nx = 1\n```").final is None
    assert parse_reply("```\nFINAL(3)\n```").final is not None  # a plain fence is text


def test_unclosed_fence_and_bad_var() -> None:
    parsed = parse_reply("```repl\nprint(1)\n")
    assert parsed.code_blocks == [] and parsed.unclosed_fence
    assert parsed.unclosed_code == "print(1)\n"
    done = parse_reply("```repl\na = 1\n```\ntext\n```python\nb = 2")
    assert done.code_blocks == ["a = 1\n"] and done.unclosed_code == "b = 2"
    assert parse_reply("```repl\nx = 1\n```").unclosed_code is None
    assert parse_reply("FINAL_VAR(1 + 2)").bad_final_var == "1 + 2"


@given(st.text())
def test_parser_never_crashes(text: str) -> None:
    parse_reply(text)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"])))
def test_final_of_any_string_literal_round_trips(value: str) -> None:
    final = parse_reply(f"Answer below.\nFINAL({value!r})\n").final
    assert final is not None and final.kind == "value" and final.text == value


@given(st.text(max_size=3000), st.integers(min_value=200, max_value=1500))
def test_clip_is_bounded_and_honest(text: str, budget: int) -> None:
    out = clip(text, budget)
    assert len(out) <= budget
    if len(text) <= budget:
        assert out == text
    else:
        marker_start = out.index("\n[… ")
        head = out[:marker_start]
        cut = len(text) - (len(out) - len(cut_marker(len(text) - len(out))))
        assert text.startswith(head)
        assert f"{cut:,} characters cut" in out or "characters cut" in out


@given(st.lists(st.text(max_size=500), max_size=30), st.integers(min_value=200, max_value=800))
def test_capped_text_keeps_head_and_tail(chunks: list[str], limit: int) -> None:
    buf = CappedText(limit)
    for c in chunks:
        buf.write(c)
    whole = "".join(chunks)
    out = buf.render()
    assert buf.total == len(whole)
    assert len(out) <= limit
    if len(whole) <= limit:
        assert out == whole
    else:
        head, rest = out.split("\n[… ", 1)
        cut = int(rest.split(" characters cut")[0].replace(",", ""))
        tail = rest.split("…]\n", 1)[1]
        assert whole.startswith(head) and whole.endswith(tail)
        assert len(head) + cut + len(tail) == len(whole)


def test_share_water_fills() -> None:
    assert share([10, 20], 100) == [10, 20]
    assert share([10, 1000, 1000], 310) == [10, 150, 150]
    assert sum(share([5000, 7000, 9000], 20_000)) == 20_000
