"""The sub-call broker through RLM runs: concurrency, limits, cache, budgets, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recursor import RLM, Limits, Pricing
from recursor.broker import ModelLimits, RetryPolicy
from recursor.lm import openai as openai_lm
from recursor.lm.stub_server import StubServer
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import SubcallMade
from tests.conftest import code, make_rlm

Chat = list[dict[str, str]]


def batch_root(prompts_expr: str, *, extra: str = "") -> ScriptedLM:
    """A root that runs ``llm_query_batched(<prompts_expr>)`` and answers with the list."""
    return ScriptedLM(
        [code(f"{extra}r = llm_query_batched({prompts_expr})\nFINAL_VAR('r')"), "FINAL(x)"]
    )


class InFlight:
    """A FunctionLM body that sleeps and records the most calls it saw at once."""

    def __init__(self, delay: float = 0.1, reply: Callable[[Chat], str] | None = None) -> None:
        self.delay = delay
        self.reply = reply or (lambda chat: chat[-1]["content"].upper())
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, chat: Chat) -> str:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(self.delay)
            return self.reply(chat)
        finally:
            with self._lock:
                self.now -= 1


@pytest.fixture(params=["inprocess", "subprocess"])
def env(request: pytest.FixtureRequest) -> str:
    """The broker sits above the sandbox seam: the two fast environments cover both ways a
    session calls it (a direct call, and a worker process's sub-call frames)."""
    return str(request.param)


def subcalls(result: Any) -> list[SubcallMade]:
    return [e for e in result.trace.events if isinstance(e, SubcallMade)]


# -- concurrency ------------------------------------------------------------------------------


def test_global_concurrency_bound_is_reached_and_kept(env: str) -> None:
    body = InFlight(0.1)
    root = batch_root("[f'p{i}' for i in range(12)]")
    rlm = make_rlm(env, root, FunctionLM(body), max_concurrency=4)
    result = rlm.completion("q", context="c")
    assert result.answer == str([f"P{i}" for i in range(12)])  # in order
    assert body.peak == 4


def test_per_model_concurrency_limit() -> None:
    body = InFlight(0.1)
    rlm = RLM(
        batch_root("[f'p{i}' for i in range(8)]"),
        FunctionLM(body, name="slow"),
        environment="inprocess",
        max_concurrency=16,
        model_limits={"slow": ModelLimits(max_concurrency=2)},
    )
    assert rlm.completion("q", context="c").answer == str([f"P{i}" for i in range(8)])
    assert body.peak == 2


def test_rpm_limit_spaces_requests() -> None:
    # 1,200 rpm = 20 a second with a one-second burst: 30 calls take about 0.5 s, not 0
    rlm = RLM(
        batch_root("[f'p{i}' for i in range(30)]"),
        FunctionLM(lambda chat: "ok", name="rated"),
        environment="inprocess",
        model_limits={"rated": ModelLimits(rpm=1200)},
    )
    t0 = time.monotonic()
    assert rlm.completion("q", context="c").answer == str(["ok"] * 30)
    assert 0.4 <= time.monotonic() - t0 < 3


def test_tpm_limit_waits_for_tokens() -> None:
    # each call is ~1,030 tokens (prompt + the 1,024-token output estimate); 60k tpm = 1k/s
    rlm = RLM(
        batch_root("['a', 'b', 'c']"),
        FunctionLM(lambda chat: "ok", name="rated"),
        environment="inprocess",
        model_limits={"rated": ModelLimits(tpm=60_000)},
    )
    t0 = time.monotonic()
    assert rlm.completion("q", context="c").answer == str(["ok"] * 3)
    assert time.monotonic() - t0 >= 1.5


# -- errors and retries against a real HTTP server ------------------------------------------


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer(handler=lambda chat: "hi " + chat[-1]["content"]) as srv:
        yield srv


def stub_lm(server: StubServer, **kw: Any) -> openai_lm.OpenAILM:
    kw.setdefault("max_retries", 0)  # the broker retries, not the SDK
    return openai_lm.create("gpt-4o-mini", base_url=server.base_url, api_key="k", **kw)


def one_call_root() -> ScriptedLM:
    return ScriptedLM([code("r = llm_query_batched(['x'])\nFINAL_VAR('r')")])


FAST_RETRY = RetryPolicy(max_attempts=4, base_s=0.01, max_s=0.05)


def test_retries_429_honouring_retry_after(server: StubServer, env: str) -> None:
    server.script.fail_first, server.script.retry_after = 2, 0.2
    sub = stub_lm(server)
    rlm = RLM(one_call_root(), sub, environment=env, retry=FAST_RETRY)
    t0 = time.monotonic()
    result = rlm.completion("q", context="c")
    assert result.answer == "['hi x']"
    assert len(server.requests) == 3
    assert time.monotonic() - t0 >= 0.4  # two waits of Retry-After, not the 10 ms base
    assert subcalls(result)[0].attempts == 3


def test_retries_5xx(server: StubServer) -> None:
    server.script.fail_first, server.script.fail_status = 1, 503
    rlm = RLM(one_call_root(), stub_lm(server), environment="inprocess", retry=FAST_RETRY)
    assert rlm.completion("q", context="c").answer == "['hi x']"
    assert len(server.requests) == 2


def test_no_retry_on_auth_error(server: StubServer) -> None:
    server.script.fail_first, server.script.fail_status = 5, 401
    rlm = RLM(one_call_root(), stub_lm(server), environment="inprocess", retry=FAST_RETRY)
    answer = rlm.completion("q", context="c").answer or ""
    assert "[error: AuthenticationError" in answer
    assert len(server.requests) == 1


def test_retries_give_up_after_max_attempts(server: StubServer) -> None:
    server.script.fail_first, server.script.fail_status = 10, 500
    rlm = RLM(one_call_root(), stub_lm(server), environment="inprocess", retry=FAST_RETRY)
    answer = rlm.completion("q", context="c").answer or ""
    assert "BadResponseError" in answer and "after 4 attempts" in answer
    assert len(server.requests) == 4


def test_per_call_timeout(server: StubServer, env: str) -> None:
    server.script.hang = True
    rlm = RLM(
        one_call_root(),
        stub_lm(server),
        environment=env,
        subcall_timeout_s=0.3,
        retry=RetryPolicy(max_attempts=2, base_s=0.01),
    )
    t0 = time.monotonic()
    answer = rlm.completion("q", context="c").answer or ""
    assert "LMTimeoutError" in answer and "subcall_timeout_s=0.3" in answer
    assert time.monotonic() - t0 < 3
    assert len(server.requests) == 2  # a timeout is retried


def test_run_deadline_bounds_a_hung_subcall(server: StubServer) -> None:
    server.script.hang = True
    rlm = RLM(
        ScriptedLM([code("r = llm_query_batched(['x'])\nFINAL_VAR('r')")] * 2),
        stub_lm(server),
        environment="inprocess",
        limits=Limits(timeout_s=0.5),
    )
    t0 = time.monotonic()
    result = rlm.completion("q", context="c")
    assert time.monotonic() - t0 < 3
    assert result.stop_reason in ("timeout", "final")


def test_failed_items_are_errors_in_place() -> None:
    def flaky(chat: Chat) -> str:
        if chat[-1]["content"] == "bad":
            raise ValueError("boom")
        return "ok"

    rlm = RLM(batch_root("['a', 'bad', 'c']"), FunctionLM(flaky), environment="inprocess")
    assert rlm.completion("q", context="c").answer == ("['ok', '[error: ValueError: boom]', 'ok']")


@pytest.mark.parametrize("environment", ["inprocess", "subprocess"])
def test_subcall_errors_raise_mode(environment: str) -> None:
    root = ScriptedLM(
        [
            code(
                "try:\n    llm_query_batched(['a', 'bad'])\n"
                "except Exception as e:\n    r = type(e).__name__ + ': ' + str(e)\n"
                "FINAL_VAR('r')"
            )
        ]
    )
    sub = FunctionLM(lambda chat: 1 / 0 if chat[-1]["content"] == "bad" else "ok")  # type: ignore[arg-type,return-value]
    rlm = RLM(root, sub, environment=environment, subcall_errors="raise")
    answer = rlm.completion("q", context="c").answer or ""
    assert answer.startswith("SubcallError: 1 of 2 batch items failed; item 1:")


# -- budgets ---------------------------------------------------------------------------------


def test_max_subcalls_runs_what_fits_and_refuses_the_rest(env: str) -> None:
    sub = FunctionLM(lambda chat: "ok")
    rlm = make_rlm(env, batch_root("['a', 'b', 'c', 'd', 'e']"), sub, limits=Limits(max_subcalls=3))
    answer = rlm.completion("q", context="c").answer or ""
    items = eval(answer)
    assert items[:3] == ["ok"] * 3
    assert all("max_subcalls=3 reached" in s for s in items[3:])
    assert sub.calls == 3


def test_max_cost_preempts_items_that_do_not_fit() -> None:
    # each item reserves its 1,024-token output estimate at $1,000/Mtok (~$1.03): two fit $2.5
    body = InFlight(0.05, lambda chat: "ok")
    sub = FunctionLM(body, pricing=Pricing(1.0, 1000.0))
    rlm = RLM(
        batch_root("[f'p{i}' for i in range(6)]"),
        sub,
        environment="inprocess",
        limits=Limits(max_cost_usd=2.5, cell_timeout_s=10),
    )
    result = rlm.completion("q", context="c")
    items = eval(result.answer or "")
    assert items[:2] == ["ok", "ok"]
    assert all("CostLimitExceeded" not in s and "max_cost_usd=2.5" in s for s in items[2:])
    assert sub.calls == 2
    # the real cost was recorded; nothing stays reserved
    assert result.usage.by_model["function"].calls == 2
    assert (result.usage.by_model["function"].cost_usd or 0) < 0.01


# -- cache -------------------------------------------------------------------------------------


def test_cache_within_a_run_counts_hits_apart(env: str) -> None:
    sub = FunctionLM(lambda chat: "v", pricing=Pricing(1.0, 1.0))
    root = ScriptedLM(
        [code("a = llm_query('same')\nb = llm_query('same')\nc = llm_query('other')\nFINAL(a+b+c)")]
    )
    result = make_rlm(env, root, sub).completion("q", context="c")
    assert result.answer == "vvv"
    assert sub.calls == 2
    u = result.usage.by_model["function"]
    assert (u.calls, u.cached_calls) == (3, 1)
    assert [e.cached for e in subcalls(result)] == [False, True, False]
    hit = next(e for e in subcalls(result) if e.cached)
    assert hit.usage["cost_usd"] == 0.0 and hit.usage["input_tokens"] == 0


def test_cache_off() -> None:
    sub = FunctionLM(lambda chat: "v")
    root = ScriptedLM([code("a = llm_query('same')\nb = llm_query('same')\nFINAL(a+b)")])
    RLM(root, sub, environment="inprocess", cache=False).completion("q", context="c")
    assert sub.calls == 2


def test_identical_calls_in_flight_are_made_once(server: StubServer) -> None:
    server.script.delay = 0.2
    rlm = RLM(batch_root("['same'] * 10"), stub_lm(server), environment="inprocess")
    result = rlm.completion("q", context="c")
    assert result.answer == str(["hi same"] * 10)
    assert len(server.requests) == 1
    u = result.usage.by_model["openai:gpt-4o-mini"]
    assert (u.calls, u.cached_calls) == (10, 9)


def test_sqlite_cache_is_shared_across_runs(server: StubServer, tmp_path: Path, env: str) -> None:
    db = tmp_path / "cache.sqlite"

    def run() -> Any:
        rlm = RLM(batch_root("['a', 'b', 'c']"), stub_lm(server), environment=env, cache=db)
        return rlm.completion("q", context="c")

    first = run()
    assert len(server.requests) == 3
    second = run()
    assert second.answer == first.answer == str(["hi a", "hi b", "hi c"])
    assert len(server.requests) == 3  # the second run made no server call
    assert second.usage.by_model["openai:gpt-4o-mini"].cached_calls == 3


def test_cache_key_includes_output_parameters(server: StubServer, tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    for temperature in (0.0, 1.0):
        rlm = RLM(
            one_call_root(),
            stub_lm(server, temperature=temperature),
            environment="inprocess",
            cache=db,
        )
        rlm.completion("q", context="c")
    assert len(server.requests) == 2


# -- context window ---------------------------------------------------------------------------


def test_prompt_larger_than_the_window_is_refused_with_sizes(env: str) -> None:
    sub = FunctionLM(lambda chat: "ok", name="tiny")
    root = ScriptedLM([code("r = llm_query_batched(['x' * 4000, 'short'])\nFINAL_VAR('r')")])
    rlm = RLM(root, sub, environment=env, context_windows={"tiny": 100})
    items = eval(rlm.completion("q", context="c").answer or "")
    assert "ContextWindowExceeded" in items[0]
    assert "~1,004 tokens (4,000 characters)" in items[0] and "100 input tokens" in items[0]
    assert items[1] == "ok"
    assert sub.calls == 1


def test_known_window_table_is_used_for_remote_models(server: StubServer) -> None:
    big = "y" * 2_000_000  # ~500k tokens: past gpt-4o-mini's 128k window
    rlm = RLM(
        ScriptedLM([code(f"r = llm_query_batched(['{big[:10]}' * 200_000])\nFINAL_VAR('r')")]),
        stub_lm(server),
        environment="inprocess",
    )
    answer = rlm.completion("q", context="c").answer or ""
    assert "ContextWindowExceeded" in answer and "openai:gpt-4o-mini accepts at most" in answer
    assert len(server.requests) == 0


# -- child runs --------------------------------------------------------------------------------


def test_child_runs_are_concurrent_and_share_the_ledger(env: str) -> None:
    def child(chat: Chat) -> str:
        if len(chat) == 2:  # a child's first turn: a cell that sleeps and prints
            return code("import time\ntime.sleep(0.4)\nprint('child out')\nFINAL(context)")
        return "FINAL(unreachable)"

    root = ScriptedLM(
        [code("print('parent')\nr = rlm_query_batched(['a', 'b', 'c', 'd'])\nFINAL_VAR('r')")]
    )
    rlm = make_rlm(env, root, FunctionLM(child), max_depth=2)
    t0 = time.monotonic()
    result = rlm.completion("q", context="c")
    assert result.answer == str(["a", "b", "c", "d"])
    assert time.monotonic() - t0 < 1.5
    assert result.usage.total.calls == 1 + 4  # root + one turn per child, one ledger


def test_async_driver_uses_the_broker(env: str) -> None:
    import asyncio

    body = InFlight(0.05)
    rlm = make_rlm(env, batch_root("['a', 'b']"), FunctionLM(body))
    result = asyncio.run(rlm.acompletion("q", context="c"))
    assert result.answer == "['A', 'B']", result.trace.events
