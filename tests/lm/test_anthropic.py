"""The Anthropic backend against a real HTTP server on 127.0.0.1 speaking the Messages API."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("anthropic")

from recursor.errors import (
    AuthenticationError,
    BadResponseError,
    ContextWindowExceeded,
    LMConnectionError,
    LMTimeoutError,
    RateLimitError,
)
from recursor.lm import anthropic as anthropic_lm
from recursor.lm.base import LM
from recursor.lm.pricing import lookup
from recursor.lm.registry import resolve_lm
from recursor.lm.stub_server import StubError, StubReply, StubServer
from recursor.usage import estimate_tokens

KEY = "sk-ant-test-0123456789-SECRET"
# a current model: the SDK warns (DeprecationWarning, an error here) about retired ones
MODEL = "claude-haiku-4-5"
CHAT = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer(handler=lambda chat: "hello") as srv:
        yield srv


MakeLM = Callable[..., anthropic_lm.AnthropicLM]


@pytest.fixture
def make_lm(server: StubServer) -> Iterator[MakeLM]:
    made: list[anthropic_lm.AnthropicLM] = []

    def make(model: str = MODEL, **kw: Any) -> anthropic_lm.AnthropicLM:
        kw.setdefault("base_url", server.url)
        kw.setdefault("api_key", KEY)
        lm = anthropic_lm.create(model, **kw)
        made.append(lm)
        return lm

    yield make
    for lm in made:
        lm.close()


def sent_key(headers: dict[str, str]) -> str | None:
    """The key as the SDK sent it (``x-api-key``, or a bearer token in newer SDKs)."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


# -------------------------------------------------------------------- plain calls


def test_plain_completion_reports_usage_and_cost(server: StubServer, make_lm: MakeLM) -> None:
    server.script.handler = lambda chat: StubReply(text="hello", usage=(120, 7))
    lm = make_lm()
    result = lm.complete(CHAT)

    assert isinstance(lm, LM)
    assert lm.name == f"anthropic:{MODEL}"
    assert result.text == "hello"
    assert result.finish_reason == "stop"  # end_turn, in the words the rest of recursor uses
    assert (result.usage.input_tokens, result.usage.output_tokens) == (120, 7)
    assert result.usage.estimated_calls == 0
    pricing = lookup("anthropic", MODEL)
    assert pricing is not None
    assert result.usage.cost_usd == pytest.approx(pricing.cost(120, 7))
    (request,) = server.requests
    assert request.path == "/v1/messages"
    assert request.body["model"] == MODEL
    assert request.body["max_tokens"] == anthropic_lm.default_max_tokens(MODEL)
    assert sent_key(request.headers) == KEY


def test_system_messages_go_to_the_system_parameter(server: StubServer, make_lm: MakeLM) -> None:
    seen: list[list[dict[str, str]]] = []

    def record(chat: list[dict[str, str]]) -> str:
        seen.append(chat)
        return "ok"

    server.script.handler = record
    make_lm(temperature=0.5, max_tokens=321).complete(
        [
            {"role": "system", "content": "Rule one."},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "system", "content": "Rule two."},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
        ]
    )
    body = server.requests[-1].body
    # one text block with a cache breakpoint (prompt caching is on by default)
    mark = {"type": "ephemeral"}
    assert body["system"] == [
        {"type": "text", "text": "Rule one.\n\nRule two.", "cache_control": mark}
    ]
    # alternation: the two user turns were merged, no system role is left in messages; the
    # last turn carries the breakpoint of the growing history
    assert body["messages"] == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": [{"type": "text", "text": "d", "cache_control": mark}]},
    ]
    assert body["temperature"] == 0.5
    assert body["max_tokens"] == 321
    assert seen[0][0] == {"role": "system", "content": "Rule one.\n\nRule two."}


def test_no_system_parameter_without_system_messages(server: StubServer, make_lm: MakeLM) -> None:
    make_lm().complete(CHAT)
    assert "system" not in server.requests[-1].body


def test_text_is_joined_from_blocks_and_thinking_is_skipped(
    server: StubServer, make_lm: MakeLM
) -> None:
    blocks = [
        {"type": "thinking", "thinking": "let me think", "signature": "sig"},
        {"type": "text", "text": "Hello, "},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "world."},
    ]
    server.script.handler = lambda chat: StubReply(blocks=blocks)
    assert make_lm().complete(CHAT).text == "Hello, world."


@pytest.mark.parametrize(
    ("ours", "expected"),
    [("stop", "stop"), ("length", "length"), ("stop_sequence", "stop_sequence")],
)
def test_stop_reason_is_mapped(
    server: StubServer, make_lm: MakeLM, ours: str, expected: str
) -> None:
    # the stub sends end_turn for "stop" and max_tokens for "length"
    server.script.handler = lambda chat: StubReply(text="x", finish_reason=ours)
    assert make_lm().complete(CHAT).finish_reason == expected


def test_reply_without_usage_is_estimated_and_marked(server: StubServer, make_lm: MakeLM) -> None:
    server.script.omit_usage = True
    result = make_lm().complete(CHAT)
    assert result.usage.estimated_calls == 1
    assert result.usage.output_tokens == estimate_tokens("hello")


def test_default_max_tokens_fits_the_model() -> None:
    assert anthropic_lm.default_max_tokens("claude-3-haiku-20240307") == 4096
    assert anthropic_lm.default_max_tokens("claude-opus-4-7") == 8192


# ---------------------------------------------------------------- retries and errors


def test_429_then_success_is_retried_by_the_sdk(server: StubServer, make_lm: MakeLM) -> None:
    server.script.fail_first = 1
    started = time.monotonic()
    assert make_lm().complete(CHAT).text == "hello"
    assert len(server.requests) == 2
    assert time.monotonic() - started < 1.0


def test_429_after_retries_maps_to_rate_limit(server: StubServer, make_lm: MakeLM) -> None:
    server.script.fail_first, server.script.retry_after = 100, 3
    with pytest.raises(RateLimitError) as info:
        make_lm(max_retries=0).complete(CHAT)
    assert info.value.retry_after == pytest.approx(3.0)


def test_hanging_server_times_out(server: StubServer, make_lm: MakeLM) -> None:
    server.script.hang = True
    started = time.monotonic()
    with pytest.raises(LMTimeoutError):
        make_lm(timeout=0.3, max_retries=0).complete(CHAT)
    assert time.monotonic() - started < 5


def test_connection_refused_maps_to_connection_error(make_lm: MakeLM) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LMConnectionError):
        make_lm(base_url=f"http://127.0.0.1:{port}", max_retries=0).complete(CHAT)


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (401, "invalid x-api-key", AuthenticationError),
        (403, "not allowed", AuthenticationError),
        (400, "prompt is too long: 210000 tokens > 200000 maximum", ContextWindowExceeded),
        (400, "max_tokens: must be positive", BadResponseError),
        (529, "Overloaded", BadResponseError),
    ],
)
def test_http_errors_are_mapped(
    server: StubServer, make_lm: MakeLM, status: int, message: str, error: type[Exception]
) -> None:
    def fail(chat: list[dict[str, str]]) -> str:
        raise StubError(status, message)

    server.script.handler = fail
    with pytest.raises(error):
        make_lm(max_retries=0).complete(CHAT)


def test_missing_key_fails_at_first_use() -> None:
    lm = anthropic_lm.create(MODEL)
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):
        lm.complete(CHAT)
    lm.close()


def test_key_never_shows_in_repr_str_or_errors(server: StubServer, make_lm: MakeLM) -> None:
    def echo_key(chat: list[dict[str, str]]) -> str:
        raise StubError(401, f"bad key {KEY}")

    lm = make_lm()
    assert KEY not in repr(lm) and KEY not in str(lm) and KEY not in repr(vars(lm))
    server.script.handler = echo_key
    with pytest.raises(AuthenticationError) as info:
        lm.complete(CHAT)
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert info.value.__cause__ is None


def test_key_is_never_logged(
    server: StubServer, make_lm: MakeLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script.fail_first = 1
    make_lm().complete(CHAT)
    assert caplog.records
    assert KEY not in caplog.text
    assert sent_key(server.requests[-1].headers) == KEY


def test_registry_and_environment(server: StubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    lm = resolve_lm(f"anthropic:{MODEL}")
    assert isinstance(lm, anthropic_lm.AnthropicLM)
    assert lm.complete(CHAT).text == "hello"
    assert sent_key(server.requests[-1].headers) == KEY
    lm.close()


# ---------------------------------------------------------------------- async path


def test_acomplete(server: StubServer, make_lm: MakeLM) -> None:
    server.script.delay = 0.2
    server.script.handler = lambda chat: chat[-1]["content"][::-1]
    lm = make_lm()

    async def fan_out() -> list[str]:
        results = await asyncio.gather(
            *(lm.acomplete([{"role": "user", "content": f"ab{i}"}]) for i in range(10))
        )
        await lm.aclose()
        return [r.text for r in results]

    started = time.monotonic()
    assert asyncio.run(fan_out()) == [f"{i}ba" for i in range(10)]
    assert time.monotonic() - started < 2.0


def test_async_client_uses_aiohttp_when_installed() -> None:
    import anthropic

    assert isinstance(anthropic_lm.async_http_client(), anthropic.DefaultAioHttpClient)


@pytest.mark.parametrize("case", ["refused", "timeout", "429"])
def test_async_transport_errors_map_as_the_sync_ones(
    server: StubServer, make_lm: MakeLM, case: str
) -> None:
    if case == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        lm = make_lm(base_url=f"http://127.0.0.1:{port}", max_retries=0)
    elif case == "timeout":
        server.script.hang = True
        lm = make_lm(timeout=0.3, max_retries=0)
    else:
        server.script.fail_first, server.script.retry_after = 100, 3
        lm = make_lm(max_retries=0)
    expected = {"refused": LMConnectionError, "timeout": LMTimeoutError, "429": RateLimitError}

    async def call() -> None:
        async with lm:
            await lm.acomplete(CHAT)

    with pytest.raises(expected[case]) as info:
        asyncio.run(call())
    with pytest.raises(expected[case]):
        lm.complete(CHAT)
    if case == "429":
        assert isinstance(info.value, RateLimitError)
        assert info.value.retry_after == pytest.approx(3.0)


def test_async_errors_are_mapped(server: StubServer, make_lm: MakeLM) -> None:
    def reject(chat: list[dict[str, str]]) -> str:
        raise StubError(401, "nope")

    server.script.handler = reject
    with pytest.raises(AuthenticationError):
        asyncio.run(make_lm().acomplete(CHAT))
