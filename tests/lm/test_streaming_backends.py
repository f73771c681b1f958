"""Streaming and prompt caching of the HTTP backends, through the real SDKs, on the stub server."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from recursor import RLM, Limits
from recursor.lm import anthropic as anthropic_lm
from recursor.lm import openai as openai_lm
from recursor.lm.base import CallHints
from recursor.lm.profile import profile_of, streaming_of
from recursor.lm.stub_server import StubServer
from recursor.sandbox import InProcessEnvironment
from recursor.streaming import Completed
from recursor.trace import ModelCalled, ModelDelta
from recursor.usage import Pricing

REPLY = "the quick brown fox jumps over the lazy dog"
PRICE = Pricing(1.0, 2.0, cached_input_per_mtok=0.1, cache_write_per_mtok=1.25)


def _lm(kind: str, srv: StubServer, **kw: object):  # type: ignore[no-untyped-def]
    if kind == "openai":
        return openai_lm.create("gpt-x", base_url=srv.base_url, api_key="k", **kw)  # type: ignore[arg-type]
    return anthropic_lm.create("claude-x", base_url=srv.url, api_key="k", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_deltas_arrive_before_the_call_ends(kind: str) -> None:
    with StubServer(handler=lambda chat: REPLY, stream_delay=0.05) as srv:
        lm = _lm(kind, srv)
        assert profile_of(lm).streams
        streaming = streaming_of(lm)
        assert streaming is not None
        seen: list[tuple[float, str]] = []
        t_end: list[float] = []

        def on_delta(text: str) -> None:
            seen.append((time.monotonic(), text))

        done = streaming.complete_with(
            [{"role": "user", "content": "hi"}], CallHints(on_delta=on_delta)
        )
        t_end.append(time.monotonic())
        assert done.text == REPLY
        assert "".join(t for _, t in seen) == REPLY
        assert len(seen) == len(REPLY.split())
        # the first piece came long before the end (9 pieces, 50 ms apart)
        assert t_end[0] - seen[0][0] > 0.25
        assert done.usage.output_tokens > 0 and not done.usage.estimated_calls
        assert srv.requests[-1].body.get("stream") is True

        async def go() -> str:
            parts: list[str] = []
            got = await streaming.acomplete_with(
                [{"role": "user", "content": "hi"}], CallHints(on_delta=parts.append)
            )
            assert "".join(parts) == got.text
            return got.text

        assert asyncio.run(go()) == REPLY
        lm.close()


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_rlm_stream_token_deltas_from_stub(kind: str) -> None:
    replies = iter(["```repl\nx = 6 * 7\n```", "FINAL(42)"])
    with StubServer(handler=lambda chat: next(replies), stream_delay=0.01) as srv:
        lm = _lm(kind, srv)
        env = InProcessEnvironment(trusted=True)
        with RLM(lm, environment=env, max_depth=0, limits=Limits(cell_timeout_s=10)) as rlm:
            events = list(rlm.stream("q", context="c"))
        lm.close()
    deltas = [e for e in events if isinstance(e, ModelDelta)]
    assert len(deltas) > 2
    called = [e for e in events if isinstance(e, ModelCalled)]
    assert "".join(d.text for d in deltas if d.iteration == 1) == called[0].reply
    assert isinstance(events[-1], Completed) and events[-1].result.answer == "42"


def test_plain_completion_sends_no_stream_request() -> None:
    replies = iter(["FINAL(1)"])
    with StubServer(handler=lambda chat: next(replies)) as srv:
        lm = _lm("openai", srv)
        env = InProcessEnvironment(trusted=True)
        with RLM(lm, environment=env, max_depth=0) as rlm:
            assert rlm.completion("q").answer == "1"
        body = srv.requests[-1].body
        assert "stream" not in body
        assert body["prompt_cache_key"].startswith("recursor-")
        lm.close()


def _turns(n: int) -> list[str]:
    return [f"```repl\nprint({i})\n```" for i in range(n - 1)] + ["FINAL(done)"]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_caching_counts_and_prices_cached_tokens(kind: str) -> None:
    results = {}
    for cache in (True, False):
        replies = iter(_turns(6))
        with StubServer(handler=lambda chat, r=replies: next(r)) as srv:
            lm = _lm(kind, srv, pricing=PRICE, prompt_cache=cache)
            env = InProcessEnvironment(trusted=True)
            with RLM(lm, environment=env, max_depth=0) as rlm:
                results[cache] = rlm.completion("q", context="c" * 2000)
            lm.close()
            if kind == "anthropic":
                marked = srv.requests[-1].body["messages"][-1]["content"]
                assert isinstance(marked, list) == cache
    on, off = results[True].usage.total, results[False].usage.total
    assert on.input_tokens == off.input_tokens  # the same prompts were sent
    assert off.cached_input_tokens == 0 and off.uncached_input_tokens == off.input_tokens
    assert on.cached_input_tokens > on.input_tokens / 2
    assert on.uncached_input_tokens < off.uncached_input_tokens / 2
    assert on.cost_usd is not None and off.cost_usd is not None
    assert on.cost_usd < off.cost_usd
    # the cost is the sum of the parts at their rates
    expected = (
        on.uncached_input_tokens * 1.0
        + on.cached_input_tokens * 0.1
        + on.cache_write_tokens * 1.25
        + on.output_tokens * 2.0
    ) / 1e6
    assert on.cost_usd == pytest.approx(expected)
    if kind == "anthropic":
        assert on.cache_write_tokens > 0


def test_stream_left_early_stops_reading_the_http_stream() -> None:
    """A streamed root call whose reader left stops at its next piece, not at the reply's end."""
    long_reply = " ".join(["word"] * 200)
    with StubServer(handler=lambda chat: long_reply, stream_delay=0.02) as srv:
        lm = _lm("openai", srv)
        env = InProcessEnvironment(trusted=True)
        before = set(threading.enumerate())
        with RLM(lm, environment=env, max_depth=0) as rlm:
            stream = rlm.stream("q")
            t0 = time.monotonic()
            for event in stream:
                if isinstance(event, ModelDelta):
                    break
            stream.close()  # type: ignore[attr-defined]
            assert time.monotonic() - t0 < 2  # 200 pieces at 20 ms would be 4 s
            # the thread that read the HTTP stream ended too (the LM is still open)
            until = time.monotonic() + 2
            while time.monotonic() < until:
                left = [t for t in set(threading.enumerate()) - before if t.daemon]
                if all("process_request" in t.name for t in left):
                    break
                time.sleep(0.05)
            assert all("process_request" in t.name for t in left), left
        lm.close()
