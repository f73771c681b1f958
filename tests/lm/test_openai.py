"""The OpenAI backend against a real HTTP server on 127.0.0.1 speaking the OpenAI wire format."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("openai")

from recursor.errors import (
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    ContextWindowExceeded,
    LMConnectionError,
    LMTimeoutError,
    RateLimitError,
)
from recursor.lm import openai as openai_lm
from recursor.lm._remote import (
    PLACEHOLDER_API_KEY,
    Secret,
    parse_retry_after,
    shared_ssl_context,
)
from recursor.lm.base import LM
from recursor.lm.pricing import lookup
from recursor.lm.registry import resolve_lm
from recursor.lm.stub_server import StubError, StubReply, StubServer
from recursor.usage import estimate_message_tokens, estimate_tokens

KEY = "sk-test-0123456789abcdef-SECRET"
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the developer's real key or base URL must never leak into (or out of) a test
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer(handler=lambda chat: "hello") as srv:
        yield srv


MakeLM = Callable[..., openai_lm.OpenAILM]


@pytest.fixture
def make_lm(server: StubServer) -> Iterator[MakeLM]:
    """LMs pointed at the stub (overridable), closed at the end of the test."""
    made: list[openai_lm.OpenAILM] = []

    def make(model: str = "gpt-4o-mini", **kw: Any) -> openai_lm.OpenAILM:
        kw.setdefault("base_url", server.base_url)
        kw.setdefault("api_key", KEY)
        lm = openai_lm.create(model, **kw)
        made.append(lm)
        return lm

    yield make
    for lm in made:
        lm.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -------------------------------------------------------------------- plain calls


def test_plain_completion_reports_usage_and_cost(server: StubServer, make_lm: MakeLM) -> None:
    lm = make_lm()
    result = lm.complete(CHAT)

    assert isinstance(lm, LM)
    assert lm.name == "openai:gpt-4o-mini"
    assert result.text == "hello"
    assert result.finish_reason == "stop"
    # the stub counts tokens with the documented estimate, so we know the exact numbers
    assert result.usage.input_tokens == estimate_message_tokens(CHAT)
    assert result.usage.output_tokens == estimate_tokens("hello")
    assert result.usage.calls == 1
    assert result.usage.estimated_calls == 0
    pricing = lookup("openai", "gpt-4o-mini")
    assert pricing is not None
    expected = pricing.cost(result.usage.input_tokens, result.usage.output_tokens)
    assert result.usage.cost_usd == pytest.approx(expected)
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["messages"] == CHAT
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_options_reach_the_request_body(server: StubServer, make_lm: MakeLM) -> None:
    lm = make_lm(temperature=0.25, max_tokens=77, extra_body={"top_k": 5})
    lm.complete(CHAT)
    body = server.requests[-1].body
    assert body["temperature"] == 0.25
    # a custom server gets the widely supported name ...
    assert body["max_tokens"] == 77
    assert body["top_k"] == 5


def test_official_api_gets_max_completion_tokens() -> None:
    # ... while api.openai.com (no base_url) gets the one its reasoning models accept;
    # checked on the request we would send, without sending it
    lm = openai_lm.create("gpt-5-mini", api_key=KEY, max_tokens=10)
    request = lm._request(CHAT)
    assert request["max_completion_tokens"] == 10
    assert "max_tokens" not in request
    lm.close()


def test_misspelt_option_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="temprature"):
        openai_lm.create("gpt-4o-mini", temprature=0.2)  # type: ignore[call-arg]


def test_unknown_model_is_unpriced_not_free(make_lm: MakeLM) -> None:
    result = make_lm("my-local-qwen").complete(CHAT)
    assert result.usage.cost_usd is None
    assert result.usage.unpriced_calls == 1


def test_explicit_pricing_overrides_the_table(make_lm: MakeLM) -> None:
    from recursor.usage import Pricing

    result = make_lm("my-local-qwen", pricing=Pricing(1.0, 2.0)).complete(CHAT)
    assert result.usage.cost_usd == pytest.approx(
        (result.usage.input_tokens * 1.0 + result.usage.output_tokens * 2.0) / 1e6
    )


def test_finish_reason_comes_from_the_choice(server: StubServer, make_lm: MakeLM) -> None:
    server.script.handler = lambda chat: StubReply(text="cut", finish_reason="length")
    assert make_lm().complete(CHAT).finish_reason == "length"


def test_reply_without_usage_is_estimated_and_marked(server: StubServer, make_lm: MakeLM) -> None:
    server.script.omit_usage = True
    result = make_lm().complete(CHAT)
    assert result.usage.estimated_calls == 1
    assert result.usage.input_tokens == estimate_message_tokens(CHAT)
    assert result.usage.output_tokens == estimate_tokens("hello")
    assert result.usage.cost_usd is not None  # estimated tokens are still priced


# ---------------------------------------------------------------- retries and errors


def test_429_then_success_is_retried_by_the_sdk(server: StubServer, make_lm: MakeLM) -> None:
    server.script.fail_first = 2
    started = time.monotonic()
    result = make_lm(max_retries=3).complete(CHAT)
    assert result.text == "hello"
    assert len(server.requests) == 3
    # the stub's Retry-After is 10 ms; the SDK's own backoff would take ~1.5 s
    assert time.monotonic() - started < 1.0


def test_429_after_retries_maps_to_rate_limit_with_retry_after(
    server: StubServer, make_lm: MakeLM
) -> None:
    server.script.fail_first = 100
    server.script.retry_after = 7
    with pytest.raises(RateLimitError) as info:
        make_lm(max_retries=0).complete(CHAT)
    assert info.value.retry_after == pytest.approx(7.0)
    assert "openai:gpt-4o-mini" in str(info.value)


def test_500_maps_to_bad_response(server: StubServer, make_lm: MakeLM) -> None:
    server.script.fail_first = 100
    server.script.fail_status = 500
    with pytest.raises(BadResponseError):
        make_lm(max_retries=0).complete(CHAT)


def test_hanging_server_times_out(server: StubServer, make_lm: MakeLM) -> None:
    server.script.hang = True
    started = time.monotonic()
    with pytest.raises(LMTimeoutError):
        make_lm(timeout=0.3, max_retries=0).complete(CHAT)
    assert time.monotonic() - started < 5


def test_connection_refused_maps_to_connection_error(make_lm: MakeLM) -> None:
    lm = make_lm(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=0)
    with pytest.raises(LMConnectionError):
        lm.complete(CHAT)


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_maps_to_authentication_error(
    server: StubServer, make_lm: MakeLM, status: int
) -> None:
    def reject(chat: list[dict[str, str]]) -> str:
        raise StubError(status, "invalid key", code="invalid_api_key")

    server.script.handler = reject
    with pytest.raises(AuthenticationError):
        make_lm().complete(CHAT)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("This model's maximum context length is 128000 tokens.", "context_length_exceeded"),
        # vLLM words it without a code
        ("This model's maximum context length is 4096 tokens. However, you requested 5000", None),
        # llama.cpp's server
        ("the request exceeds the available context size, try increasing it", None),
    ],
)
def test_context_overflow_maps_to_context_window_exceeded(
    server: StubServer, make_lm: MakeLM, message: str, code: str | None
) -> None:
    def overflow(chat: list[dict[str, str]]) -> str:
        raise StubError(400, message, code=code)

    server.script.handler = overflow
    with pytest.raises(ContextWindowExceeded):
        make_lm().complete(CHAT)


def test_other_400_is_a_bad_response(server: StubServer, make_lm: MakeLM) -> None:
    def bad(chat: list[dict[str, str]]) -> str:
        raise StubError(400, "temperature must be <= 2")

    server.script.handler = bad
    with pytest.raises(BadResponseError):
        make_lm().complete(CHAT)


@pytest.mark.parametrize(
    "reply",
    [
        StubReply(raw={"id": "x", "object": "chat.completion", "choices": []}),
        StubReply(text=None, finish_reason="length"),
    ],
    ids=["no-choices", "null-content"],
)
def test_unusable_replies_are_bad_responses(
    server: StubServer, make_lm: MakeLM, reply: StubReply
) -> None:
    server.script.handler = lambda chat: reply
    with pytest.raises(BadResponseError):
        make_lm().complete(CHAT)


# ----------------------------------------------------------------- keys and config


def test_missing_key_fails_at_first_use_not_at_creation() -> None:
    lm = openai_lm.create("gpt-4o-mini")  # no key, no base_url: the official API
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        lm.complete(CHAT)
    lm.close()


def test_custom_server_without_key_gets_a_placeholder(server: StubServer) -> None:
    with openai_lm.create("gpt-4o-mini", base_url=server.base_url) as lm:
        assert lm.complete(CHAT).text == "hello"
    assert server.requests[-1].headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


def test_key_and_base_url_come_from_the_environment(
    server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    with openai_lm.create("gpt-4o-mini") as lm:
        assert lm.complete(CHAT).text == "hello"
    assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_registry_resolves_openai_strings(
    server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    lm = resolve_lm("openai:gpt-4o-mini")
    assert isinstance(lm, openai_lm.OpenAILM)
    assert lm.name == "openai:gpt-4o-mini"
    assert lm.complete(CHAT).text == "hello"
    lm.close()


def test_key_never_shows_in_repr_str_or_errors(server: StubServer, make_lm: MakeLM) -> None:
    def echo_key(chat: list[dict[str, str]]) -> str:
        # a careless server that echoes the key back in its error
        raise StubError(401, f"Incorrect API key provided: {KEY}")

    lm = make_lm()
    assert KEY not in repr(lm)
    assert KEY not in str(lm)
    assert KEY not in repr(vars(lm))
    server.script.handler = echo_key
    with pytest.raises(AuthenticationError) as info:
        lm.complete(CHAT)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)
    # the SDK exception (which quotes the key) is not chained, so no traceback prints it
    assert info.value.__cause__ is None
    # ... but the server did get the key
    assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_key_is_never_logged(
    server: StubServer, make_lm: MakeLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs included
    server.script.fail_first = 1  # a retry logs more
    make_lm().complete(CHAT)
    assert caplog.records  # the SDK did log, just not the key
    assert KEY not in caplog.text
    assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_sdk_error_is_chained_when_it_holds_no_secret(server: StubServer, make_lm: MakeLM) -> None:
    import openai

    server.script.fail_first, server.script.fail_status = 100, 500
    with pytest.raises(BadResponseError) as info:
        make_lm(max_retries=0).complete(CHAT)
    assert isinstance(info.value.__cause__, openai.InternalServerError)


def test_secret_and_retry_after_helpers() -> None:
    secret = Secret("abc")
    assert "abc" not in repr(secret) and "abc" not in str(secret)
    assert secret.redact("key=abc!") == "key=***!"
    assert parse_retry_after({"retry-after-ms": "250"}) == pytest.approx(0.25)
    assert parse_retry_after({"retry-after": "3"}) == pytest.approx(3.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after(None) is None
    # an HTTP date in the past means "now"
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_tls_context_is_built_once_per_ca_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    made: list[ssl.SSLContext] = []

    def create() -> ssl.SSLContext:
        made.append(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        return made[-1]

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    first = shared_ssl_context(create)
    assert shared_ssl_context(create) is first and len(made) == 1
    monkeypatch.setenv("SSL_CERT_FILE", "/elsewhere/ca.pem")  # read by the factories
    assert shared_ssl_context(create) is not first and len(made) == 2


# ---------------------------------------------------------------------- async path


def test_acomplete_runs_concurrently(server: StubServer, make_lm: MakeLM) -> None:
    server.script.delay = 0.3
    server.script.handler = lambda chat: chat[-1]["content"].upper()
    lm = make_lm()

    async def fan_out() -> list[str]:
        chats = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
        results = await asyncio.gather(*(lm.acomplete(c) for c in chats))
        return [r.text for r in results]

    started = time.monotonic()
    texts = asyncio.run(fan_out())
    assert texts == [f"Q{i}" for i in range(20)]
    # 20 replies delayed 0.3 s each, served concurrently
    assert time.monotonic() - started < 2.5


def test_acomplete_in_two_event_loops_reuses_nothing_stale(make_lm: MakeLM) -> None:
    # each asyncio.run gets its own pool; the first is closed when its loop shuts down
    lm = make_lm()
    first = asyncio.run(lm.acomplete(CHAT))
    second = asyncio.run(lm.acomplete(CHAT))
    assert first.text == second.text == "hello"


def test_async_errors_are_mapped_too(server: StubServer, make_lm: MakeLM) -> None:
    server.script.hang = True
    lm = make_lm(timeout=0.3, max_retries=0)

    async def call() -> None:
        async with lm:
            await lm.acomplete(CHAT)

    with pytest.raises(LMTimeoutError):
        asyncio.run(call())


def test_async_client_uses_aiohttp_when_installed() -> None:
    import openai

    client = openai_lm.async_http_client()
    assert isinstance(client, openai.DefaultAioHttpClient)
    asyncio.run(client.aclose())


def test_async_calls_work_on_httpx2_without_aiohttp(
    server: StubServer, make_lm: MakeLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openai

    class NoAiohttp(openai.DefaultAioHttpClient):
        """The SDK's stand-in when aiohttp is missing raises this on construction."""

        def __init__(self, **_kwargs: Any) -> None:
            raise RuntimeError("To use the aiohttp client you must have installed ...")

    monkeypatch.setattr(openai_lm, "_AioHttpClient", NoAiohttp)
    made: list[object] = []
    real = openai_lm.shared_async_http_client

    def spy(*args: Any) -> Any:
        made.append(client := real(*args))
        return client

    monkeypatch.setattr(openai_lm, "shared_async_http_client", spy)
    lm = make_lm(max_retries=0)

    async def call() -> str:
        async with lm:
            return (await lm.acomplete(CHAT)).text

    assert asyncio.run(call()) == "hello"
    assert [type(c) for c in made] == [openai.DefaultAsyncHttpxClient]


def dropping_server() -> tuple[socket.socket, int]:
    """A listener that reads each request and hangs up without answering."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    threading.Thread(target=serve, daemon=True).start()
    return listener, int(listener.getsockname()[1])


@pytest.mark.parametrize("case", ["refused", "dropped", "timeout", "429"])
def test_async_transport_errors_map_as_the_sync_ones(
    server: StubServer, make_lm: MakeLM, case: str
) -> None:
    # the aiohttp transport files a refused or dropped connection as a connect *timeout*;
    # recursor.lm.openai corrects that, so both paths raise the same errors
    listener = None
    if case == "refused":
        lm = make_lm(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=0)
    elif case == "dropped":
        listener, port = dropping_server()
        lm = make_lm(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    elif case == "timeout":
        server.script.hang = True
        lm = make_lm(timeout=0.3, max_retries=0)
    else:
        server.script.fail_first, server.script.retry_after = 100, 7
        lm = make_lm(max_retries=0)
    expected = {
        "refused": LMConnectionError,
        "dropped": LMConnectionError,
        "timeout": LMTimeoutError,
        "429": RateLimitError,
    }[case]

    async def call() -> None:
        async with lm:
            await lm.acomplete(CHAT)

    try:
        with pytest.raises(expected) as info:
            asyncio.run(call())
        with pytest.raises(expected):
            lm.complete(CHAT)
    finally:
        if listener is not None:
            listener.close()
    if case == "429":
        assert isinstance(info.value, RateLimitError)
        assert info.value.retry_after == pytest.approx(7.0)


def test_async_429_is_retried_by_the_sdk(server: StubServer, make_lm: MakeLM) -> None:
    server.script.fail_first = 2
    lm = make_lm(max_retries=3)

    async def call() -> str:
        async with lm:
            return (await lm.acomplete(CHAT)).text

    started = time.monotonic()
    assert asyncio.run(call()) == "hello"
    assert len(server.requests) == 3
    assert time.monotonic() - started < 1.0  # Retry-After (10 ms) honoured


def test_sync_calls_from_many_threads_share_one_client(server: StubServer, make_lm: MakeLM) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server.script.delay = 0.2
    lm = make_lm()
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        texts = list(pool.map(lambda _: lm.complete(CHAT).text, range(16)))
    assert texts == ["hello"] * 16
    assert time.monotonic() - started < 2.0


# ------------------------------------------------------------ an RLM over the stub


def test_rlm_root_and_sub_through_the_openai_stub(server: StubServer, make_lm: MakeLM) -> None:
    """A whole run over HTTP: the root writes a cell that calls llm_query, then FINAL_VAR."""
    from recursor import RLM, Limits

    root_reply = (
        "Let me ask the sub-model.\n"
        "```repl\nshout = llm_query('shout: ' + context[:11])\nprint(len(shout))\n```\n"
        "FINAL_VAR(shout)"
    )

    def handler(chat: list[dict[str, str]]) -> str:
        if chat[0]["role"] == "system":  # the root gets the RLM system prompt
            return root_reply
        prompt = chat[-1]["content"]
        return prompt.split("shout: ", 1)[1].upper()

    server.script.handler = handler
    root = make_lm("gpt-5-mini")
    sub = make_lm("gpt-4.1-nano")
    rlm = RLM(root=root, sub=sub, environment="subprocess", limits=Limits(cell_timeout_s=30))
    result = rlm.completion("Shout the greeting.", context="hello world, and more text")

    assert result.stop_reason == "final", result.error
    assert result.answer == "HELLO WORLD"
    by_model = result.usage.by_model
    assert by_model["openai:gpt-5-mini"].calls == 1
    assert by_model["openai:gpt-4.1-nano"].calls == 1
    assert result.usage.total.cost_usd is not None and result.usage.total.cost_usd > 0
    assert [r.body["model"] for r in server.requests] == ["gpt-5-mini", "gpt-4.1-nano"]
