"""OpenAI chat models, and every server that speaks the OpenAI chat-completions API.

``openai:gpt-5-mini`` goes to api.openai.com; with ``base_url=`` (or ``OPENAI_BASE_URL``) the
same backend talks to vLLM, SGLang, llama.cpp's server, Ollama, LM Studio or OpenRouter.
Requests go through the official ``openai`` SDK, which also does the retrying (429 and 5xx,
honouring ``Retry-After``); we map its exceptions onto :mod:`recursor.errors` and its usage
onto :class:`~recursor.usage.Usage`. Async calls use the SDK's aiohttp transport when
``aiohttp`` is installed (the extra brings it; the SDK's httpx2 otherwise), see
:mod:`recursor.lm._http`. Needs openai 3.0 or newer (the first on httpx2).

Install with ``pip install "recursor[openai]"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

import httpx2  # the openai SDK's HTTP library since 3.0
import openai

from recursor.errors import BadResponseError
from recursor.lm._http import AioHttpErrorsCorrected
from recursor.lm._http import async_http_client as shared_async_http_client
from recursor.lm._remote import (
    RemoteKwargs,
    SDKClientLM,
    SDKErrors,
    call_usage,
    int_or_none,
)
from recursor.lm.base import CallHints, Completion, Message
from recursor.usage import Pricing, Usage

__all__ = [
    "OPENAI_ERRORS",
    "OpenAILM",
    "async_http_client",
    "create",
    "parse_chat_completion",
]

#: the openai SDK's exceptions by role; litellm's subclass these, so it reuses the table
OPENAI_ERRORS = SDKErrors(
    base=(openai.OpenAIError,),
    authentication=(openai.AuthenticationError, openai.PermissionDeniedError),
    rate_limit=(openai.RateLimitError,),
    timeout=(openai.APITimeoutError,),
    connection=(openai.APIConnectionError,),
)


class _AioHttpClient(AioHttpErrorsCorrected, openai.DefaultAioHttpClient):
    """The SDK's aiohttp client, its connection errors corrected (still needed with openai
    3.57: tests/lm/test_http.py checks that its bridge still files a refused connection as a
    connect timeout)."""


def async_http_client() -> httpx2.AsyncClient:
    """The HTTP client under one ``AsyncOpenAI``: aiohttp's when installed, else httpx2's."""
    return shared_async_http_client(_AioHttpClient, openai.DefaultAsyncHttpxClient)


def parse_chat_completion(
    lm_name: str, messages: list[Message], response: Any, pricing: Pricing | None
) -> Completion:
    """A :class:`Completion` from a chat-completions response object (SDK or litellm).

    Read with ``getattr`` because OpenAI-compatible servers differ: some omit ``usage``,
    some send ``null`` counts, a broken one may send no choices at all.
    """
    choices = getattr(response, "choices", None)
    if not choices:
        raise BadResponseError(f"{lm_name}: the response has no choices")
    choice = choices[0]
    finish_reason = getattr(choice, "finish_reason", None)
    text = getattr(getattr(choice, "message", None), "content", None)
    if not isinstance(text, str):
        refusal = getattr(getattr(choice, "message", None), "refusal", None)
        why = f"refused: {refusal}" if refusal else f"finish_reason={finish_reason!r}"
        raise BadResponseError(f"{lm_name}: the reply has no text content ({why})")
    reason = finish_reason if isinstance(finish_reason, str) else None
    return Completion(
        text, _usage(messages, text, getattr(response, "usage", None), pricing), reason
    )


def _usage(messages: list[Message], text: str, usage: Any, pricing: Pricing | None) -> Usage:
    """The call's usage from a chat-completions ``usage`` object (a response's or a stream's
    last chunk's), cached prompt tokens apart; estimated when the server sent none."""
    input_tokens = int_or_none(getattr(usage, "prompt_tokens", None))
    output_tokens = int_or_none(getattr(usage, "completion_tokens", None))
    if not input_tokens:
        # No real prompt is 0 tokens: a zero means "not counted" (litellm fills in zeros for a
        # server that sent no usage), so both counts are estimated instead.
        input_tokens = output_tokens = None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int_or_none(getattr(details, "cached_tokens", None)) or 0
    if input_tokens is None or not 0 <= cached <= input_tokens:
        cached = 0
    return call_usage(messages, text, (input_tokens, output_tokens), pricing, (cached, 0))


class _Chunks:
    """A streamed chat completion put back together, piece by piece."""

    def __init__(self, on_delta: Callable[[str], None]) -> None:
        self.on_delta = on_delta
        self.parts: list[str] = []
        self.finish: str | None = None
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "index", 0) != 0:
                continue
            piece = getattr(getattr(choice, "delta", None), "content", None)
            if isinstance(piece, str) and piece:
                self.parts.append(piece)
                self.on_delta(piece)
            reason = getattr(choice, "finish_reason", None)
            if isinstance(reason, str):
                self.finish = reason

    def completion(
        self, lm_name: str, messages: list[Message], pricing: Pricing | None
    ) -> Completion:
        text = "".join(self.parts)
        return Completion(text, _usage(messages, text, self.usage, pricing), self.finish)


class OpenAILM(SDKClientLM[openai.OpenAI, openai.AsyncOpenAI]):
    """A chat model behind the OpenAI API. Thread-safe; one SDK client pair per object.

    Call :meth:`close` (or use ``with``) to release the sync connection pool; async pools are
    closed when their event loop shuts down, or at once by :meth:`aclose`.
    """

    provider = "openai"
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    errors = OPENAI_ERRORS
    can_stream = True

    def _new_sync_client(self, kwargs: dict[str, Any]) -> openai.OpenAI:
        return openai.OpenAI(**kwargs)

    def _new_async_client(self, kwargs: dict[str, Any]) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(**kwargs, http_client=async_http_client())

    def _request(self, messages: list[Message]) -> dict[str, Any]:
        opts = self.options
        request: dict[str, Any] = {"model": self.model, "messages": messages}
        if opts.temperature is not None:
            request["temperature"] = opts.temperature
        if opts.max_tokens is not None:
            # OpenAI's reasoning models (o-series, GPT-5) reject max_tokens, while many
            # compatible servers know only max_tokens: pick by who we are talking to.
            field = "max_tokens" if self.base_url else "max_completion_tokens"
            request[field] = opts.max_tokens
        if opts.extra_body:
            request["extra_body"] = dict(opts.extra_body)
        return request

    def _send(self, request: dict[str, Any]) -> Any:
        return self._clients.sync().chat.completions.create(**request)

    async def _asend(self, request: dict[str, Any]) -> Any:
        client = await self._clients.async_()
        return await client.chat.completions.create(**request)

    def _parse(self, messages: list[Message], response: Any) -> Completion:
        return parse_chat_completion(self.name, messages, response, self.pricing)

    def _hinted(self, request: dict[str, Any], hints: CallHints) -> dict[str, Any]:
        if self.options.prompt_cache and hints.cache_key is not None:
            # routes a run's calls to the same cache shard: its growing prefix is then a hit
            return {**request, "prompt_cache_key": hints.cache_key}
        return request

    def _stream(
        self, messages: list[Message], request: dict[str, Any], on_delta: Callable[[str], None]
    ) -> Completion:
        chunks = _Chunks(on_delta)
        stream = self._clients.sync().chat.completions.create(**request, **_STREAMED)
        with stream:  # closes the response even when on_delta raises (the run was stopped)
            for chunk in stream:
                chunks.add(chunk)
        return chunks.completion(self.name, messages, self.pricing)

    async def _astream(
        self, messages: list[Message], request: dict[str, Any], on_delta: Callable[[str], None]
    ) -> Completion:
        chunks = _Chunks(on_delta)
        client = await self._clients.async_()
        stream = await client.chat.completions.create(**request, **_STREAMED)
        async with stream:
            async for chunk in stream:
                chunks.add(chunk)
        return chunks.completion(self.name, messages, self.pricing)


#: a streamed request that still reports usage (in a last chunk without choices)
_STREAMED: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}


def create(model: str, **kw: Unpack[RemoteKwargs]) -> OpenAILM:
    """The LM for ``openai:<model>`` (what :func:`recursor.lm.registry.resolve_lm` calls).

    Keywords: ``base_url``, ``api_key``, ``temperature``, ``max_tokens``, ``timeout`` (seconds
    per attempt), ``max_retries`` (done by the SDK, honouring Retry-After), ``extra_body``,
    ``pricing`` ("auto": the table in :mod:`recursor.lm.pricing`; a
    :class:`~recursor.usage.Pricing`; or ``None`` for unpriced).
    """
    return OpenAILM.from_kwargs(model, **kw)
