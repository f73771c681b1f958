"""The broker's parts on their own: retry policy, token buckets, cache, cost reservations."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from recursor import Limits, Pricing, Usage
from recursor.broker import BrokerOptions, BrokerRuntime, ModelLimits, RetryPolicy
from recursor.broker.cache import SubcallCache, cache_key
from recursor.broker.policy import TokenBucket, is_retryable
from recursor.errors import (
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    ContextWindowExceeded,
    LMConnectionError,
    LMTimeoutError,
    RateLimitError,
)
from recursor.limits import Ledger
from recursor.lm import openai as openai_lm
from recursor.testing import FunctionLM


class _Status(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


def _mapped(cls: type[Exception], status: int) -> Exception:
    exc = cls("x")
    exc.__cause__ = _Status(status)
    return exc


def test_retryable_errors() -> None:
    assert is_retryable(RateLimitError("x"))
    assert is_retryable(LMTimeoutError("x"))
    assert is_retryable(LMConnectionError("x"))
    assert is_retryable(_mapped(BadResponseError, 503))
    assert not is_retryable(_mapped(BadResponseError, 400))
    assert not is_retryable(BadResponseError("malformed body"))
    assert not is_retryable(AuthenticationError("x"))
    assert not is_retryable(ContextWindowExceeded("x"))


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, base_s=0.5, max_s=3.0)
    delays = [policy.delay(3, LMTimeoutError("x")) for _ in range(200)]
    assert all(0 <= d <= 3.0 for d in delays)  # min(3, 0.5 * 2**3 = 4)
    assert max(delays) > 1.5  # jittered over the whole range, not a constant
    assert policy.delay(0, RateLimitError("x", retry_after=7.0)) == 7.0


def test_policies_validate() -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError):
        ModelLimits(rpm=0)
    with pytest.raises(ConfigurationError):
        BrokerOptions(max_concurrency=0)
    with pytest.raises(ConfigurationError):
        BrokerOptions(subcall_errors="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="does not exist"):
        BrokerOptions(cache="/nonexistent/dir/cache.sqlite")


def test_token_bucket_paces_after_its_burst() -> None:
    async def run() -> float:
        bucket = TokenBucket(rate=20, capacity=5)
        t0 = time.monotonic()
        for _ in range(15):  # 5 at once, then 10 at 20 a second
            await bucket.take()
        return time.monotonic() - t0

    assert 0.45 <= asyncio.run(run()) < 1.0


def test_context_window_lookup() -> None:
    opts = BrokerOptions(context_windows={"function": 50})
    assert opts.context_window(FunctionLM(lambda c: "x")) == 50
    assert opts.context_window(FunctionLM(lambda c: "x", name="other")) is None
    lm = openai_lm.create("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", api_key="k")
    assert BrokerOptions().context_window(lm) == 128_000
    override = BrokerOptions(context_windows={"openai:gpt-4o-mini": 1000})
    assert override.context_window(lm) == 1000


def test_cost_reservations() -> None:
    ledger = Ledger(Limits(max_cost_usd=1.0))
    assert ledger.reserve_cost(0.6)
    assert not ledger.reserve_cost(0.6)  # 1.2 would pass the cap
    ledger.record("m", Usage(calls=1, cost_usd=0.1))
    ledger.release_cost(0.6)
    assert ledger.reserve_cost(0.6)  # 0.1 spent + 0.6 reserved
    ledger.release_cost(0.6)
    assert ledger.report().total.cost_usd == 0.1
    assert Ledger(Limits()).reserve_cost(1e9)  # no cap, always fits


def test_cache_key_covers_model_messages_and_parameters() -> None:
    chat = [{"role": "user", "content": "hi"}]
    a = FunctionLM(lambda c: "x", name="a")
    assert cache_key(a, chat) == cache_key(a, [dict(chat[0])])
    assert cache_key(a, chat) != cache_key(FunctionLM(lambda c: "x", name="b"), chat)
    assert cache_key(a, chat) != cache_key(a, [{"role": "user", "content": "hi!"}])
    assert cache_key(a, chat) != cache_key(a, [{"role": "system", "content": "hi"}])
    cold = openai_lm.create("m", base_url="http://127.0.0.1:9/v1", api_key="k", temperature=0)
    hot = openai_lm.create("m", base_url="http://127.0.0.1:9/v1", api_key="k", temperature=1)
    assert cache_key(cold, chat) != cache_key(hot, chat)


def test_sqlite_cache_persists_and_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = SubcallCache(path)

    def write(k: int) -> None:
        for i in range(50):
            cache.put(f"{k}-{i}", "m", f"reply {k} {i}")

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.close()
    again = SubcallCache(path)
    assert again.get("3-49") == "reply 3 49"
    assert again.get("missing") is None
    again.close()


def test_runtime_loop_starts_lazily_and_stops() -> None:
    runtime = BrokerRuntime(BrokerOptions())

    async def where() -> str:
        return threading.current_thread().name

    assert runtime.submit(where()).result() == "recursor-broker"
    runtime.close()
    coro = where()
    with pytest.raises(RuntimeError, match="closed"):
        runtime.submit(coro)


def test_cached_usage_is_free_only_when_priced() -> None:
    from recursor.broker.plain import cached_usage as _cached_usage

    priced = FunctionLM(lambda c: "x", pricing=Pricing(1, 1))
    assert _cached_usage(priced) == Usage(calls=1, cached_calls=1, cost_usd=0.0)
    assert _cached_usage(FunctionLM(lambda c: "x")).cost_usd is None
