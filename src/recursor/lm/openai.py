"""OpenAI chat models, and every server that speaks the OpenAI chat-completions API.

``openai:gpt-5-mini`` goes to api.openai.com; with ``base_url=`` (or ``OPENAI_BASE_URL``) the
same backend talks to vLLM, SGLang, llama.cpp's server, Ollama, LM Studio or OpenRouter.
Requests go through the official ``openai`` SDK, which also does the retrying (429 and 5xx,
honouring ``Retry-After``); we map its exceptions onto :mod:`recursor.errors` and its usage
onto :class:`~recursor.usage.Usage`.

Install with ``pip install "recursor[openai]"``.
"""

from __future__ import annotations

from typing import Any, Literal

import openai

from recursor.errors import BadResponseError, LMError
from recursor.lm import pricing as price_table
from recursor.lm._remote import (
    CallOptions,
    Endpoint,
    LazyClients,
    SDKErrors,
    call_usage,
    int_or_none,
    map_error,
    resolve_endpoint,
    safe_cause,
)
from recursor.lm.base import Completion, Message
from recursor.usage import Pricing

__all__ = ["OPENAI_ERRORS", "OpenAILM", "create", "parse_chat_completion"]

#: the openai SDK's exceptions by role; litellm's subclass these, so it reuses the table
OPENAI_ERRORS = SDKErrors(
    base=(openai.OpenAIError,),
    authentication=(openai.AuthenticationError, openai.PermissionDeniedError),
    rate_limit=(openai.RateLimitError,),
    timeout=(openai.APITimeoutError,),
    connection=(openai.APIConnectionError,),
)


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
    usage = getattr(response, "usage", None)
    usage_of_call = call_usage(
        messages,
        text,
        int_or_none(getattr(usage, "prompt_tokens", None)),
        int_or_none(getattr(usage, "completion_tokens", None)),
        pricing,
    )
    return Completion(text, usage_of_call, finish_reason if isinstance(finish_reason, str) else None)


class OpenAILM:
    """A chat model behind the OpenAI API. Thread-safe; one SDK client pair per object.

    Call :meth:`close` (and :meth:`aclose` from the loop that made async calls), or use the
    object as a (async) context manager, to release its connection pools.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        options: CallOptions | None = None,
        pricing: Pricing | None | Literal["auto"] = "auto",
    ) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.options = options or CallOptions()
        self._endpoint: Endpoint = resolve_endpoint(
            "openai",
            api_key=api_key,
            base_url=base_url,
            key_env="OPENAI_API_KEY",
            base_url_env="OPENAI_BASE_URL",
        )
        self.pricing = price_table.lookup("openai", model) if pricing == "auto" else pricing
        self._clients: LazyClients[openai.OpenAI, openai.AsyncOpenAI] = LazyClients(
            lambda: openai.OpenAI(**self._client_kwargs()),
            lambda: openai.AsyncOpenAI(**self._client_kwargs()),
        )

    @property
    def base_url(self) -> str | None:
        return self._endpoint.base_url

    def __repr__(self) -> str:
        return f"OpenAILM(model={self.model!r}, base_url={self.base_url!r})"

    def complete(self, messages: list[Message]) -> Completion:
        request = self._request(messages)
        try:
            response = self._clients.sync().chat.completions.create(**request)
        except openai.OpenAIError as exc:
            raise self._map(exc) from safe_cause(exc, self._endpoint)
        return parse_chat_completion(self.name, messages, response, self.pricing)

    async def acomplete(self, messages: list[Message]) -> Completion:
        request = self._request(messages)
        try:
            response = await self._clients.async_().chat.completions.create(**request)
        except openai.OpenAIError as exc:
            raise self._map(exc) from safe_cause(exc, self._endpoint)
        return parse_chat_completion(self.name, messages, response, self.pricing)

    def close(self) -> None:
        self._clients.close(lambda client: client.close())

    async def aclose(self) -> None:
        self._clients.close(lambda client: client.close())
        await self._clients.aclose(lambda client: client.close())

    def __enter__(self) -> OpenAILM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAILM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- shared by the sync and async paths ------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "api_key": self._endpoint.key(),
            "base_url": self._endpoint.base_url,
            "max_retries": self.options.max_retries,
        }
        if self.options.timeout is not None:
            kwargs["timeout"] = self.options.timeout
        return kwargs

    def _request(self, messages: list[Message]) -> dict[str, Any]:
        opts = self.options
        request: dict[str, Any] = {"model": self.model, "messages": messages}
        if opts.temperature is not None:
            request["temperature"] = opts.temperature
        if opts.max_tokens is not None:
            # OpenAI's reasoning models (o-series, GPT-5) reject max_tokens, while many
            # compatible servers know only max_tokens: pick by who we are talking to.
            field = "max_tokens" if self._endpoint.base_url else "max_completion_tokens"
            request[field] = opts.max_tokens
        if opts.extra_body:
            request["extra_body"] = dict(opts.extra_body)
        return request

    def _map(self, exc: BaseException) -> LMError:
        return map_error(exc, OPENAI_ERRORS, lm_name=self.name, endpoint=self._endpoint)


def create(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    max_retries: int = 2,
    extra_body: dict[str, Any] | None = None,
    pricing: Pricing | None | Literal["auto"] = "auto",
) -> OpenAILM:
    """The LM for ``openai:<model>`` (what :func:`recursor.lm.registry.resolve_lm` calls).

    ``pricing="auto"`` looks the model up in :mod:`recursor.lm.pricing`; pass a
    :class:`~recursor.usage.Pricing` for a model it does not know, or ``None`` for "unpriced".
    """
    options = CallOptions(
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=timeout,
        max_retries=max_retries,
        extra_body=extra_body,
    )
    return OpenAILM(model, base_url=base_url, api_key=api_key, options=options, pricing=pricing)
