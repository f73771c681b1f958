"""Background sub-calls: llm_query_async & co. return handles; results collected in later turns."""

from __future__ import annotations

import threading
import time

import pytest

from recursor import Limits
from recursor._cancel import Cancel
from recursor.broker.background import BackgroundCalls
from recursor.sandbox.base import BackgroundRequest, SubcallRequest, SubcallResponse
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import BackgroundFinished, BackgroundStarted, ModelCalled, SubcallMade, Trace
from tests.conftest import code, make_rlm

ENVS = ["inprocess", "subprocess"]


@pytest.mark.parametrize("env", ENVS)
def test_batch_finishes_while_the_root_inspects_the_context(env: str) -> None:
    release = threading.Event()

    def sub(messages: list[dict[str, str]]) -> str:
        release.wait(10)
        return messages[-1]["content"].upper()

    turns = [
        # turn 1: start the fan-out, return at once
        code(
            "hs = llm_query_batched_async([f'part {i}' for i in range(8)])\n"
            "print(len(hs), sum(h.done() for h in hs))"
        ),
        # turn 2: inspect the context while the batch runs; then let the batch finish
        code("print(len(context))"),
        # turn 3: collect
        code("done, pending = wait(hs, timeout=10)\nprint(len(done), len(pending))"),
        code("FINAL(' '.join(h.result() for h in hs))"),
    ]
    seen: list[str] = []

    def root(messages: list[dict[str, str]]) -> str:
        seen.append(messages[-1]["content"])
        turn = (len(messages) - 2) // 2
        if turn == 2:
            release.set()
            time.sleep(0.5)  # the batch finishes between turns 2 and 3
        return turns[turn]

    with make_rlm(env, FunctionLM(root), FunctionLM(sub)) as rlm:
        result = rlm.completion("q", context="x" * 100)
    assert result.answer == " ".join(f"PART {i}" for i in range(8)), result.error
    assert "8 0" in seen[1]  # handles came back at once, none done
    assert "100" in seen[2]
    # the observation after turn 2 listed the calls that finished meanwhile
    assert "Background calls finished since your last turn: 8" in seen[3]
    assert "8 0" in seen[3]
    events = result.trace.events
    assert sum(isinstance(e, BackgroundStarted) for e in events) == 1
    assert sum(isinstance(e, BackgroundFinished) for e in events) == 8
    assert sum(isinstance(e, SubcallMade) for e in events) == 8


@pytest.mark.parametrize("env", ENVS)
def test_run_ending_with_pending_calls_cancels_them(env: str) -> None:
    started: list[str] = []
    gate = threading.Event()

    def sub(messages: list[dict[str, str]]) -> str:
        started.append(messages[-1]["content"])
        gate.wait(10)
        return "late"

    root = ScriptedLM(
        [
            code(
                "hs = llm_query_batched_async([f'p{i}' for i in range(40)])\n"
                "h = rlm_query_async('x')"
            ),
            "FINAL(early)",
        ]
    )
    before = set(threading.enumerate())
    with make_rlm(env, root, FunctionLM(sub), max_concurrency=2) as rlm:
        t0 = time.monotonic()
        result = rlm.completion("q")
        assert time.monotonic() - t0 < 5
        gate.set()
        time.sleep(0.3)
    assert result.answer == "early"
    assert len(started) <= 3  # two slots in flight (+ the child's), the rest never started
    finished = [e for e in result.trace.events if isinstance(e, BackgroundFinished)]
    assert len(finished) == 41 and all(e.cancelled for e in finished)
    # the reservations of calls never made were given back
    assert result.usage.total.calls <= 4
    left = [t for t in set(threading.enumerate()) - before if t.name == "recursor-background"]
    assert not left


def test_forged_and_unknown_handles_are_clean_errors() -> None:
    root = ScriptedLM(
        [
            code(
                "h = llm_query_async('a')\n"
                "from recursor.sandbox.repl import Handle\n"
                "fake = Handle(h._repl, 999)\n"
                "try:\n    fake.result(timeout=1)\nexcept Exception as e:\n"
                "    print(type(e).__name__, e)\n"
                "print(h.result(timeout=5))"
            ),
            "FINAL(ok)",
        ]
    )
    with make_rlm("inprocess", root, FunctionLM(lambda m: "A")) as rlm:
        result = rlm.completion("q")
    obs = result.trace.of(ModelCalled)[1].new_messages[0]["content"]
    assert "SubcallError unknown background handle id(s) [999]" in obs
    assert "\nA\n" in obs or obs.rstrip().endswith("A") or "A" in obs.split("unknown")[1]


def test_forged_background_frames_from_a_worker() -> None:
    """A worker sends background frames for handles it never got: refused, the host is fine."""
    root = ScriptedLM(
        [
            code(
                "from recursor.sandbox.base import BackgroundRequest\n"
                "send = wait.__self__._call_background  # the worker's own channel call\n"
                "st = send(BackgroundRequest('wait', None, [12345], 0.0))\n"
                "print('refused:', st.refused)\n"
                "st = send(BackgroundRequest('wait', None, [-1, 2**40], None))\n"
                "print('refused2:', st.refused is not None)"
            ),
            "FINAL(ok)",
        ]
    )
    with make_rlm("subprocess", root, FunctionLM(lambda m: "A")) as rlm:
        result = rlm.completion("q")
    assert result.answer == "ok"
    obs = result.trace.of(ModelCalled)[1].new_messages[0]["content"]
    assert "refused: unknown background handle id(s) [12345]" in obs
    assert "refused2: True" in obs


def test_handle_cap() -> None:
    calls: list[SubcallRequest] = []

    def handler(request: SubcallRequest) -> SubcallResponse:
        calls.append(request)
        return SubcallResponse(
            ["x"] * len(request.prompts),
            [None] * len(request.prompts),
            [None] * len(request.prompts),
        )

    bg = BackgroundCalls(handler, cancel=Cancel(), trace=Trace(), run_id="r")
    import recursor.broker.background as mod

    big = SubcallRequest("llm", ["p"] * mod.MAX_HANDLES, True)
    assert bg(BackgroundRequest("start", big)).refused is None
    over = bg(BackgroundRequest("start", SubcallRequest("llm", ["p"])))
    assert over.refused is not None and over.refused_type == "SubcallLimitExceeded"
    status = bg(BackgroundRequest("wait", None, [1, mod.MAX_HANDLES], 5.0))
    assert status.done == [True, True]
    bg.close()
    after = bg(BackgroundRequest("start", SubcallRequest("llm", ["p"])))
    assert after.refused is not None


def test_prompt_advertises_background_functions() -> None:
    root = ScriptedLM(["FINAL(x)"])
    for style in ("full", "compact"):
        with make_rlm(
            "inprocess", root if style == "full" else ScriptedLM(["FINAL(x)"]), prompt_style=style
        ) as rlm:
            result = rlm.completion("q")
        system = result.trace.of(ModelCalled)[0].new_messages[0]["content"]
        assert "llm_query_batched_async" in system and "wait(" in system, style


def test_cell_timeout_stops_a_wait() -> None:
    gate = threading.Event()
    root = ScriptedLM([code("h = llm_query_async('slow')\nh.result()"), "FINAL(x)"])
    with make_rlm(
        "subprocess",
        root,
        FunctionLM(lambda m: (gate.wait(10), "s")[1]),
        limits=Limits(cell_timeout_s=1),
    ) as rlm:
        t0 = time.monotonic()
        result = rlm.completion("q")
        gate.set()
    assert time.monotonic() - t0 < 8
    assert result.answer == "x"
