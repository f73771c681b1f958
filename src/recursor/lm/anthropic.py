"""Anthropic's Claude models through the official ``anthropic`` SDK (the Messages API).

``anthropic:claude-sonnet-4-5`` goes to api.anthropic.com; ``base_url=`` (or
``ANTHROPIC_BASE_URL``) points it at a proxy or gateway. The chat we get is OpenAI-shaped, so it
is reshaped here: system messages move to the ``system`` parameter and same-role neighbours are
merged (the API wants user and assistant turns to alternate). Replies are joined from their
text blocks; thinking blocks are the model's scratchpad, not its answer, and are skipped.
Async calls use the SDK's aiohttp transport when ``aiohttp`` is installed (the extra brings it;
the SDK's httpx2 otherwise, see :mod:`recursor.lm._http`).

Install with ``pip install "recursor[anthropic]"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Unpack

import anthropic
import httpx2  # the anthropic SDK's HTTP library (2.x)

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
from recursor.lm.base import Completion, LMProfile, Message
from recursor.usage import Pricing

__all__ = [
    "ANTHROPIC_ERRORS",
    "AnthropicLM",
    "async_http_client",
    "create",
    "default_max_tokens",
    "to_anthropic",
]

ANTHROPIC_ERRORS = SDKErrors(
    base=(anthropic.AnthropicError,),
    authentication=(anthropic.AuthenticationError, anthropic.PermissionDeniedError),
    rate_limit=(anthropic.RateLimitError,),
    timeout=(anthropic.APITimeoutError,),
    connection=(anthropic.APIConnectionError,),
)

#: Anthropic's stop reasons in the OpenAI words the rest of recursor uses; others pass through
_FINISH = {"end_turn": "stop", "max_tokens": "length"}


class _AioHttpClient(AioHttpErrorsCorrected, anthropic.DefaultAioHttpClient):
    """The SDK's aiohttp client, its connection errors corrected: a no-op on 2.15, whose
    bridge files them right; 2.0's filed a refused connection as a connect timeout."""


def async_http_client() -> httpx2.AsyncClient:
    """The HTTP client under one ``AsyncAnthropic``: aiohttp's when installed, else httpx2's."""
    return shared_async_http_client(_AioHttpClient, anthropic.DefaultAsyncHttpxClient)


def default_max_tokens(model: str) -> int:
    """``max_tokens`` is required by the API. 8192 fits every Claude from 3.5 on and leaves
    room for long code cells; the Claude 3 originals cap output at 4096."""
    legacy = ("claude-3-opus", "claude-3-sonnet", "claude-3-haiku")
    return 4096 if model.startswith(legacy) else 8192


def to_anthropic(messages: list[Message]) -> tuple[str | None, list[dict[str, str]]]:
    """``(system, turns)`` for the Messages API from an OpenAI-style chat.

    Every system message goes into ``system`` (joined by blank lines, in order); any other
    non-assistant role counts as the user's. Consecutive turns of one role are joined.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        content = message.get("content") or ""
        if message.get("role") == "system":
            system.append(content)
            continue
        role = "assistant" if message.get("role") == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": f"{turns[-1]['content']}\n\n{content}"}
        else:
            turns.append({"role": role, "content": content})
    return ("\n\n".join(system) if system else None), turns


def parse_message(
    lm_name: str, messages: list[Message], response: Any, pricing: Pricing | None
) -> Completion:
    """A :class:`Completion` from a Messages API response."""
    blocks = getattr(response, "content", None)
    if not isinstance(blocks, list):
        raise BadResponseError(f"{lm_name}: the response has no content blocks")
    # text blocks only: thinking / redacted_thinking (and tool blocks) are not the answer
    text = "".join(
        block.text
        for block in blocks
        if getattr(block, "type", None) == "text" and isinstance(getattr(block, "text", None), str)
    )
    stop_reason = getattr(response, "stop_reason", None)
    finish = _FINISH.get(stop_reason, stop_reason) if isinstance(stop_reason, str) else None
    usage = getattr(response, "usage", None)
    input_tokens = int_or_none(getattr(usage, "input_tokens", None))
    written = int_or_none(getattr(usage, "cache_creation_input_tokens", None)) or 0
    read = int_or_none(getattr(usage, "cache_read_input_tokens", None)) or 0
    if input_tokens is not None:
        # cached prompt tokens are reported apart from input_tokens; they were still read
        input_tokens += written + read
    else:
        written = read = 0
    output_tokens = int_or_none(getattr(usage, "output_tokens", None))
    return Completion(
        text,
        call_usage(messages, text, (input_tokens, output_tokens), pricing, (read, written)),
        finish,
    )


#: marks the end of a prefix the API is to cache (5 minutes, refreshed by each hit)
_BREAKPOINT = {"type": "ephemeral"}


def with_breakpoints(
    system: str | None, turns: list[dict[str, str]]
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """``system`` and ``turns`` with cache breakpoints: on the system prompt (the same for the
    whole run) and on the last turn (the growing history: the next call reads it back, as it
    only appends). Two of the API's four allowed breakpoints."""
    blocks = None
    if system is not None:
        blocks = [{"type": "text", "text": system, "cache_control": _BREAKPOINT}]
    marked: list[dict[str, Any]] = list(turns)
    if marked:
        last = marked[-1]
        content = [{"type": "text", "text": last["content"], "cache_control": _BREAKPOINT}]
        marked[-1] = {"role": last["role"], "content": content}
    return blocks, marked


class AnthropicLM(SDKClientLM[anthropic.Anthropic, anthropic.AsyncAnthropic]):
    """A Claude model. Thread-safe; one SDK client pair per object, closed as for
    :class:`recursor.lm.openai.OpenAILM`."""

    provider = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    errors = ANTHROPIC_ERRORS
    can_stream = True

    @property
    def profile(self) -> LMProfile:
        # max_tokens is required, so every call has an output cap even when none was given
        cap = self.options.max_tokens or default_max_tokens(self.model)
        return dataclasses.replace(super().profile, max_output_tokens=cap)

    def _new_sync_client(self, kwargs: dict[str, Any]) -> anthropic.Anthropic:
        return anthropic.Anthropic(**kwargs)

    def _new_async_client(self, kwargs: dict[str, Any]) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(**kwargs, http_client=async_http_client())

    def _request(self, messages: list[Message]) -> dict[str, Any]:
        opts = self.options
        system, turns = to_anthropic(messages)
        request: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
            "max_tokens": opts.max_tokens or default_max_tokens(self.model),
        }
        if opts.prompt_cache:
            blocks, request["messages"] = with_breakpoints(system, turns)
            if blocks is not None:
                request["system"] = blocks
        elif system is not None:
            request["system"] = system
        extra = dict(opts.extra_body or {})
        if opts.temperature is not None:
            # in the body, not as a keyword: anthropic SDK 2.x dropped the keyword from
            # messages.create while the API (for the models that allow it) still takes it
            extra.setdefault("temperature", opts.temperature)
        if extra:
            request["extra_body"] = extra
        return request

    def _send(self, request: dict[str, Any]) -> Any:
        return self._clients.sync().messages.create(**request)

    async def _asend(self, request: dict[str, Any]) -> Any:
        client = await self._clients.async_()
        return await client.messages.create(**request)

    def _parse(self, messages: list[Message], response: Any) -> Completion:
        return parse_message(self.name, messages, response, self.pricing)

    def _stream(
        self, messages: list[Message], request: dict[str, Any], on_delta: Callable[[str], None]
    ) -> Completion:
        # the SDK's stream helper puts the message together: its final one parses as usual
        with self._clients.sync().messages.stream(**request) as stream:
            for text in stream.text_stream:
                on_delta(text)
            final = stream.get_final_message()
        return self._parse(messages, final)

    async def _astream(
        self, messages: list[Message], request: dict[str, Any], on_delta: Callable[[str], None]
    ) -> Completion:
        client = await self._clients.async_()
        async with client.messages.stream(**request) as stream:
            async for text in stream.text_stream:
                on_delta(text)
            final = await stream.get_final_message()
        return self._parse(messages, final)


def create(model: str, **kw: Unpack[RemoteKwargs]) -> AnthropicLM:
    """The LM for ``anthropic:<model>`` (what :func:`recursor.lm.registry.resolve_lm` calls).

    Keywords as for :func:`recursor.lm.openai.create`; ``max_tokens`` defaults to
    :func:`default_max_tokens` because the API requires it.
    """
    return AnthropicLM.from_kwargs(model, **kw)
