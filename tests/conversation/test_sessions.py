"""Sessions (issue 13, point 1): one REPL across asks, history, more contexts, limits, locking,
closing and the idle timeout; on the fakes, in-process and in a worker."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from recursor import Limits
from recursor.errors import (
    ConversationBusy,
    ConversationClosed,
    SandboxError,
    TokenLimitExceeded,
)
from recursor.lm.base import Message
from recursor.testing import FunctionLM, ScriptedLM
from tests.conftest import code, make_rlm

ENVS = ["inprocess", "subprocess"]


@pytest.fixture(params=ENVS)
def env(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_variable_of_ask_1_is_there_in_ask_2(env: str) -> None:
    lm = ScriptedLM(
        [
            code("import math\nn = len(context.split())\nprint(n)"),
            "FINAL_VAR(n)",
            code("print(n * 10, math.sqrt(4), history[0]['answer'])"),
            "FINAL(done)",
        ]
    )
    with make_rlm(env, lm) as rlm, rlm.session(context="a b c") as s:
        r1 = s.ask("How many words?")
        r2 = s.ask("Ten times that?")
    assert (r1.answer, r2.answer) == ("3", "done")
    cells = [e for e in r2.trace.events if e.type == "cell_ran"]
    assert cells[0].stdout.strip() == "30 2.0 3"  # type: ignore[attr-defined]
    # the follow-up's root was told the earlier question and answer
    first = lm.calls[2][1]["content"]
    assert "Q1: How many words?" in first and "A1: 3" in first
    # and shown the variables the REPL holds, so it reuses them instead of recomputing
    assert "Variables in the REPL now" in first and "\nn: int" in first
    # each ask has its own usage and trace; the session adds them up
    assert r1.usage.total.calls == 2 and r2.usage.total.calls == 2
    assert s.usage.total.calls == 4
    assert r1.run_id != r2.run_id
    assert len({e.run_id for e in r2.trace.events}) == 1


def test_add_context_binds_context_1_and_the_root_is_told(env: str) -> None:
    lm = ScriptedLM([code("FINAL(context_1['k'] + len(context))")])
    with make_rlm(env, lm) as rlm, rlm.session(context="abc") as s:
        assert s.add_context({"k": 4}) == "context_1"
        assert s.contexts == ["context", "context_1"]
        assert s.ask("sum").answer == "7"
    assert "`context_1` (dict" in lm.calls[0][1]["content"]


def test_history_and_added_contexts_are_protected(env: str) -> None:
    lm = ScriptedLM(
        [code("history = None\ncontext_1 = 0"), code("FINAL(str(len(history)) + context_1)")]
    )
    with make_rlm(env, lm) as rlm, rlm.session(context="x") as s:
        s.add_context("more")
        r = s.ask("q")
    assert r.answer is not None and r.answer.endswith("more")


def test_session_limits_cap_the_sum_of_asks(env: str) -> None:
    lm = FunctionLM(lambda m: "FINAL(ok)")
    with (
        make_rlm(env, lm) as rlm,
        rlm.session(context="x", session_limits=Limits(max_tokens=1)) as s,
    ):
        r = s.ask("q")  # the ask's own max_tokens is the session's: 1 token is too few
        assert r.stop_reason == "budget"
    with (
        make_rlm(env, lm) as rlm,
        rlm.session(context="x", session_limits=Limits(max_iterations=2)) as s,
    ):
        assert s.ask("q1").ok and s.ask("q2").ok
        with pytest.raises(Exception, match=r"session_limits\.max_iterations"):
            s.ask("q3")


def test_session_token_budget_left_is_enforced(env: str) -> None:
    lm = FunctionLM(lambda m: "FINAL(ok)")
    with make_rlm(env, lm) as rlm:
        with rlm.session(context="x") as probe:
            used = probe.ask("q").usage.total.total_tokens
        with rlm.session(context="x", session_limits=Limits(max_tokens=used)) as s:
            assert s.ask("q").ok
            with pytest.raises(TokenLimitExceeded):
                s.ask("q")


def test_concurrent_asks_serialize(env: str) -> None:
    inside = threading.Event()
    active = [0]
    overlaps = []

    def fn(messages: list[Message]) -> str:
        active[0] += 1
        overlaps.append(active[0])
        inside.set()
        time.sleep(0.2)
        active[0] -= 1
        return "FINAL(ok)"

    with make_rlm(env, FunctionLM(fn)) as rlm, rlm.session(context="x") as s:
        results = []
        threads = [threading.Thread(target=lambda: results.append(s.ask("q"))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [r.answer for r in results] == ["ok"] * 3
    assert max(overlaps) == 1  # never two root calls of one session at once


def test_aask_while_another_ask_runs_fails_clearly(env: str) -> None:
    def fn(messages: list[Message]) -> str:
        time.sleep(0.3)
        return "FINAL(ok)"

    async def main() -> list[object]:
        with make_rlm(env, FunctionLM(fn)) as rlm:
            async with rlm.session(context="x") as s:
                first = asyncio.ensure_future(s.aask("q1"))
                await asyncio.sleep(0.05)
                with pytest.raises(ConversationBusy):
                    await s.aask("q2")
                done = await first
                again = await s.aask("q3")
                return [done.answer, again.answer]

    assert asyncio.run(main()) == ["ok", "ok"]


def test_close_stops_the_worker_and_refuses_asks() -> None:
    lm = ScriptedLM([code("import os\nFINAL(os.getpid())")])
    with make_rlm("subprocess", lm) as rlm:
        s = rlm.session(context="x")
        pid = int(s.ask("pid?").answer or 0)
        s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        assert not _alive(pid)
        with pytest.raises(ConversationClosed):
            s.ask("again")


def test_idle_timeout_closes_an_unused_session(env: str) -> None:
    lm = FunctionLM(lambda m: "FINAL(ok)")
    with make_rlm(env, lm) as rlm:
        s = rlm.session(context="x", idle_timeout_s=0.3)
        assert s.ask("q").ok  # an ask re-arms the timer
        time.sleep(0.8)
        assert s.closed
        with pytest.raises(ConversationClosed, match="idle_timeout_s"):
            s.ask("q")


def test_the_worker_restarting_keeps_history_and_added_contexts() -> None:
    lm = ScriptedLM(
        [
            "FINAL(one)",
            code("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
            code("FINAL(str(history[0]['answer']) + context_1)"),
        ]
    )
    with make_rlm("subprocess", lm) as rlm, rlm.session(context="x") as s:
        s.add_context("two")
        s.ask("q1")
        assert s.ask("q2").answer == "onetwo"


def test_resume_record_is_readable_json(env: str, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "s.json"
    lm = ScriptedLM([code("x = llm_query('hi')\nprint(x)"), "FINAL_VAR(x)"])
    sub = FunctionLM(lambda m: "hello")
    with make_rlm(env, lm, sub) as rlm, rlm.session(context="secret text") as s:
        s.ask("q")
        s.save(path)
    data = json.loads(path.read_text())
    ask = data["log"][1]
    assert ask["question"] == "q" and ask["answer"] == "hello"
    assert ask["cells"][0]["code"].startswith("x = llm_query")
    assert ask["subcalls"][0]["reply"] == "hello"
    assert "secret text" not in path.read_text()  # the context by hash only
    assert len(data["log"][0]["sha256"]) == 64


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead to us
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_a_closed_rlm_refuses_a_session() -> None:
    rlm = make_rlm("inprocess", ScriptedLM([]))
    rlm.close()
    with pytest.raises(Exception, match="closed"):
        rlm.session(context="x")


_ = SandboxError


def test_a_session_streams_its_asks_and_a_broken_stream_leaves_it_usable(env: str) -> None:
    from recursor.streaming import Completed

    release = threading.Event()

    def reply(messages: list[Message]) -> str:
        question = messages[1]["content"]
        if "plus one" in question:  # first: later asks' prompts list the earlier questions
            return code("FINAL(x + 1)")
        if "slow" in question:
            release.wait(30)  # a root model call in flight when the reader leaves
            return "FINAL(late)"
        if len(messages) == 2:
            return code("x = 41\nprint('set')")
        return "FINAL_VAR(x)"

    with make_rlm(env, FunctionLM(reply)) as rlm, rlm.session(context="abc") as s:
        events = list(s.stream("set x"))
        assert isinstance(events[-1], Completed) and events[-1].result.answer == "41"
        kinds = [e.type for e in events]
        assert "cell_started" in kinds and "cell_ran" in kinds and "model_delta" in kinds
        t0 = time.monotonic()
        for event in s.stream("slow one"):
            if event.type == "run_started":
                break  # leave while the root model call hangs
        assert time.monotonic() - t0 < 10  # the call was abandoned, not waited for
        release.set()
        # the REPL and the conversation are intact: x is still there
        assert s.ask("x plus one?").answer == "42"
    assert [a["answer"] for a in s.history] == ["41", None, "42"]


def test_background_handles_of_an_ended_ask_are_unknown_in_the_next(env: str) -> None:
    lm = ScriptedLM(
        [
            code("h = llm_query_async('slow')\nprint(h.done())"),
            "FINAL(ok)",  # the ask ends with h pending: it is cancelled
            code("print(h.result(timeout=1))"),
            code("h2 = llm_query_async('fast')\nprint(h2.id > h.id, h2.result(timeout=10))"),
            "FINAL(done)",
        ]
    )

    def sub(messages: list[Message]) -> str:
        if messages[-1]["content"] == "slow":
            time.sleep(3)
        return "pong"

    with make_rlm(env, lm, sub=FunctionLM(sub)) as rlm, rlm.session(context="abc") as s:
        assert s.ask("start one").answer == "ok"
        r2 = s.ask("use the old handle")
    assert r2.answer == "done"
    cells = [e for e in r2.trace.events if e.type == "cell_ran"]
    assert "unknown background handle" in (cells[0].error or "")  # type: ignore[attr-defined]
    assert cells[1].stdout.strip() == "True pong"  # type: ignore[attr-defined]
