"""The litellm backend against a real HTTP server on 127.0.0.1 (litellm's openai route)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# without this, importing litellm fetches its price map from the internet
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

from recursor.errors import (  # noqa: E402
    AuthenticationError,
    BadResponseError,
    ContextWindowExceeded,
    LMConnectionError,
    LMTimeoutError,
    RateLimitError,
)
from recursor.lm import litellm as litellm_lm  # noqa: E402
from recursor.lm.base import LM  # noqa: E402
from recursor.lm.registry import resolve_lm  # noqa: E402
from recursor.lm.stub_server import StubError, StubReply, StubServer  # noqa: E402
from recursor.usage import Pricing, estimate_message_tokens, estimate_tokens  # noqa: E402

# litellm's response types trip a pydantic UserWarning on first use; it is litellm's to fix
pytestmark = pytest.mark.filterwarnings(
    "ignore:Item 'summary' on TypedDict class 'ChatCompletionReasoningItem':UserWarning"
)

KEY = "sk-litellm-test-0123456789-SECRET"
MODEL = "openai/gpt-4o-mini"
CHAT = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer(handler=lambda chat: "hello") as srv:
        yield srv


MakeLM = Callable[..., litellm_lm.LiteLLMLM]


@pytest.fixture
def make_lm(server: StubServer) -> MakeLM:
    def make(model: str = MODEL, **kw: Any) -> litellm_lm.LiteLLMLM:
        kw.setdefault("base_url", server.base_url)
        kw.setdefault("api_key", KEY)
        return litellm_lm.create(model, **kw)

    return make


def test_plain_completion_with_litellm_cost(server: StubServer, make_lm: MakeLM) -> None:
    lm = make_lm()
    result = lm.complete(CHAT)
    assert isinstance(lm, LM)
    assert lm.name == f"litellm:{MODEL}"
    assert result.text == "hello"
    assert result.finish_reason == "stop"
    assert result.usage.input_tokens == estimate_message_tokens(CHAT)
    assert result.usage.output_tokens == estimate_tokens("hello")
    assert result.usage.estimated_calls == 0
    prompt_cost, completion_cost = litellm.cost_per_token(
        model=MODEL,
        prompt_tokens=result.usage.input_tokens,
        completion_tokens=result.usage.output_tokens,
    )
    assert result.usage.cost_usd == pytest.approx(prompt_cost + completion_cost)
    assert result.usage.unpriced_calls == 0
    assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_model_unknown_to_everyone_is_unpriced(make_lm: MakeLM) -> None:
    result = make_lm("openai/my-local-model").complete(CHAT)
    assert result.usage.cost_usd is None
    assert result.usage.unpriced_calls == 1


def test_explicit_pricing_wins(make_lm: MakeLM) -> None:
    result = make_lm(pricing=Pricing(1e6, 0.0)).complete(CHAT)
    assert result.usage.cost_usd == pytest.approx(result.usage.input_tokens)


def test_reply_without_usage_is_estimated_and_marked(server: StubServer, make_lm: MakeLM) -> None:
    # litellm fills in zero counts for a server that sent none; we estimate instead
    server.script.omit_usage = True
    result = make_lm().complete(CHAT)
    assert result.usage.estimated_calls == 1
    assert result.usage.input_tokens == estimate_message_tokens(CHAT)
    assert result.usage.output_tokens == estimate_tokens("hello")


def test_429_then_success(server: StubServer, make_lm: MakeLM) -> None:
    server.script.fail_first = 1
    started = time.monotonic()
    assert make_lm(max_retries=2).complete(CHAT).text == "hello"
    assert len(server.requests) == 2
    assert time.monotonic() - started < 2.0


def test_429_exhausted_maps_to_rate_limit(server: StubServer, make_lm: MakeLM) -> None:
    server.script.fail_first = 100
    with pytest.raises(RateLimitError):
        make_lm(max_retries=0).complete(CHAT)


def test_hanging_server_times_out(server: StubServer, make_lm: MakeLM) -> None:
    server.script.hang = True
    started = time.monotonic()
    with pytest.raises(LMTimeoutError):
        make_lm(timeout=0.3, max_retries=0).complete(CHAT)
    assert time.monotonic() - started < 5


def test_connection_refused(make_lm: MakeLM) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LMConnectionError):
        make_lm(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0).complete(CHAT)


@pytest.mark.parametrize(
    ("status", "message", "code", "error"),
    [
        (401, "Incorrect API key", "invalid_api_key", AuthenticationError),
        (400, "maximum context length is 128000 tokens", "context_length_exceeded", None),
        (400, "unknown parameter", None, BadResponseError),
    ],
)
def test_http_errors_are_mapped(
    server: StubServer,
    make_lm: MakeLM,
    status: int,
    message: str,
    code: str | None,
    error: type[Exception] | None,
) -> None:
    def fail(chat: list[dict[str, str]]) -> str:
        raise StubError(status, message, code=code)

    server.script.handler = fail
    with pytest.raises(error or ContextWindowExceeded):
        make_lm(max_retries=0).complete(CHAT)


def test_null_content_is_a_bad_response(server: StubServer, make_lm: MakeLM) -> None:
    server.script.handler = lambda chat: StubReply(text=None)
    with pytest.raises(BadResponseError):
        make_lm().complete(CHAT)


def test_key_never_shows(server: StubServer, make_lm: MakeLM) -> None:
    def echo_key(chat: list[dict[str, str]]) -> str:
        raise StubError(401, f"Incorrect API key provided: {KEY}")

    lm = make_lm()
    assert KEY not in repr(lm) and KEY not in repr(vars(lm))
    server.script.handler = echo_key
    with pytest.raises(AuthenticationError) as info:
        lm.complete(CHAT)
    assert KEY not in str(info.value)


def test_acomplete(server: StubServer, make_lm: MakeLM) -> None:
    server.script.handler = lambda chat: chat[-1]["content"].upper()
    lm = make_lm()

    async def run() -> list[str]:
        results = await asyncio.gather(
            *(lm.acomplete([{"role": "user", "content": f"q{i}"}]) for i in range(5))
        )
        # litellm keeps its own async clients; close them on the loop that opened them
        await litellm.close_litellm_async_clients()
        return [r.text for r in results]

    assert asyncio.run(run()) == [f"Q{i}" for i in range(5)]


def test_registry_resolves_litellm_strings(server: StubServer) -> None:
    lm = resolve_lm(f"litellm:{MODEL}")
    assert isinstance(lm, litellm_lm.LiteLLMLM)
    assert lm.model == MODEL
    assert repr(lm) == f"LiteLLMLM(model={MODEL!r}, base_url=None)"


def test_missing_litellm_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    from recursor.errors import ConfigurationError

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "litellm" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.delitem(sys.modules, "recursor.lm.litellm")  # restored after the test
    with pytest.raises(ConfigurationError, match=r"recursor\[litellm\]"):
        resolve_lm(f"litellm:{MODEL}")
