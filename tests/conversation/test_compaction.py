"""Compaction (issue 13, point 6): a scripted 300-turn run on a small window stays under the
threshold, keeps the system prompt, the question and the last turns verbatim, records each
compaction in the trace and still gets its answer; the REPL is untouched."""

from __future__ import annotations

import pytest

from recursor import Limits
from recursor.compaction import Compaction, plan
from recursor.errors import ConfigurationError
from recursor.lm.base import LMProfile, Message
from recursor.testing import FunctionLM
from recursor.trace import HistoryCompacted
from recursor.usage import estimate_message_tokens
from tests.conftest import make_rlm

WINDOW = 4_000
TURNS = 300


@pytest.mark.parametrize("env", ["inprocess", "subprocess"])
def test_a_300_turn_run_stays_under_the_threshold(env: str) -> None:
    sizes: list[int] = []
    firsts: list[tuple[str, str]] = []

    def fn(messages: list[Message]) -> str:
        if messages[0]["content"].startswith("You are compacting"):
            return "Notes: the agent is counting turns in `n`; keep going."
        sizes.append(estimate_message_tokens(messages))
        firsts.append((messages[0]["content"], messages[1]["content"]))
        turn = len(sizes)
        if turn == TURNS:
            return "FINAL_VAR(n)"
        # each turn adds ~100 tokens of reply and output: 300 turns are 30,000 tokens unkept
        return (
            f"Turn {turn}. "
            + "x" * 200
            + "\n```repl\nn = globals().get('n', 0) + 1\n"
            + (f"print('turn {turn}', n, 'y' * 150)\n```")
        )

    profile = LMProfile(context_window=WINDOW)
    lm = FunctionLM(fn, profile=profile)
    with make_rlm(env, lm, limits=Limits(max_iterations=TURNS, cell_timeout_s=10)) as rlm:
        result = rlm.completion("Count the turns.", context="ctx")
    assert result.answer == str(TURNS - 1)  # the REPL kept every increment
    assert result.stop_reason == "final"
    assert max(sizes) <= int(WINDOW * 0.8) + 200  # the threshold, plus one turn's growth
    assert len({f for f in firsts}) == 1  # system prompt and question never changed
    events = [e for e in result.trace.events if isinstance(e, HistoryCompacted)]
    assert len(events) >= 5
    assert all(e.tokens_after < e.tokens_before for e in events)
    assert events[-1].last_turn > events[0].last_turn
    # the usage includes the summaries (each is a model call of its own)
    assert result.usage.total.calls == TURNS + len(events)


def test_off_when_compact_at_is_none_or_the_window_unknown() -> None:
    def fn(messages: list[Message]) -> str:
        return "FINAL(ok)" if len(messages) > 12 else "```repl\nprint('z' * 3000)\n```"

    lm = FunctionLM(fn, profile=LMProfile(context_window=1_000))
    with make_rlm("inprocess", lm, compact_at=None) as rlm:
        r = rlm.completion("q", context="c")
    assert r.ok and not [e for e in r.trace.events if isinstance(e, HistoryCompacted)]
    with make_rlm("inprocess", FunctionLM(fn)) as rlm:  # no window known: nothing to measure
        r = rlm.completion("q", context="c")
    assert r.ok and not [e for e in r.trace.events if isinstance(e, HistoryCompacted)]


def test_the_plan_keeps_the_last_turns_and_alternates_roles() -> None:
    msgs: list[Message] = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    for i in range(6):
        msgs += [
            {"role": "assistant", "content": f"reply {i} " + "r" * 400},
            {"role": "user", "content": f"obs {i} " + "o" * 400},
        ]
    c = Compaction(window_tokens=1_000, compact_at=0.5, keep_turns=2)
    p = plan(msgs, c, 0)
    assert p is not None
    assert (p.first, p.last) == (1, 5)
    assert msgs[p.end]["role"] == "user" and len(msgs) - p.end == 3
    with pytest.raises(ConfigurationError):
        Compaction(window_tokens=10, compact_at=1.5)
