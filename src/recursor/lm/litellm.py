"""Any provider litellm knows, through ``litellm.completion`` / ``litellm.acompletion``.

``litellm:anthropic/claude-haiku-4-5``, ``litellm:gemini/gemini-2.5-flash``,
``litellm:openai/my-model`` with ``base_url=``... litellm finds each provider's key in that
provider's usual environment variable, so unlike the other backends we pass a key only when
given one. Replies come back in the OpenAI shape and litellm's exceptions subclass openai's,
so parsing and error mapping are :mod:`recursor.lm.openai`'s. Cost comes from litellm's own
price map when it knows the model, else from :mod:`recursor.lm.pricing`, else it is unknown.

Install with ``pip install "recursor[litellm]"``. Importing litellm takes seconds, so this
module only checks that it is installed (the registry turns the ImportError into an install
hint) and imports it at the first call.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, Unpack

from recursor.errors import LMError
from recursor.lm import pricing as price_table
from recursor.lm._remote import RemoteKwargs, RemoteLM, SDKErrors
from recursor.lm.base import Completion, LMProfile, Message
from recursor.usage import Pricing

if importlib.util.find_spec("litellm") is None:  # pragma: no cover - depends on the install
    raise ImportError("the litellm backend needs the litellm package")

# litellm's exceptions subclass the openai SDK's, which litellm depends on
from recursor.lm.openai import OPENAI_ERRORS, parse_chat_completion

__all__ = ["LiteLLMLM", "create"]

#: how far down an exception's cause chain we look for the error litellm wrapped
_MAX_CHAIN = 8

_import_lock = threading.Lock()
_module: ModuleType | None = None


def _litellm() -> ModuleType:
    """litellm, imported once and configured for library use."""
    global _module
    with _import_lock:
        if _module is None:
            # Without this, importing litellm downloads its price map from the internet
            # (a 5 s timeout when offline); the copy it ships is what we want anyway.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            module: Any = importlib.import_module("litellm")
            # litellm prints a "Give Feedback / Get Help" banner on stdout for every error
            module.suppress_debug_info = True
            _module = module
        return _module


def _find_in_chain(
    exc: BaseException, types: tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first exception of ``types`` in ``exc``'s cause/context chain (``exc`` included)."""
    current: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if current is None:
            return None
        if isinstance(current, types):
            return current
        current = current.__cause__ or current.__context__
    return None


class LiteLLMLM(RemoteLM):
    """A model reached through litellm (which pools and reuses its own HTTP clients)."""

    provider = "litellm"
    key_env = None  # litellm reads each provider's own variable
    base_url_env = None
    errors = OPENAI_ERRORS

    def __init__(self, model: str, **kw: Any) -> None:
        super().__init__(model, **kw)
        self._explicit_pricing = kw.get("pricing", "auto") != "auto"

    def close(self) -> None:
        """Nothing to do: litellm owns its clients."""

    async def aclose(self) -> None:
        """Nothing to do: litellm owns its clients."""

    def _sdk_errors(self) -> SDKErrors:
        # openai's classes, plus the one litellm raises for a context overflow
        return dataclasses.replace(
            OPENAI_ERRORS, context_window=(_litellm().ContextWindowExceededError,)
        )

    def _map(self, exc: BaseException) -> LMError:
        # litellm reports an unreachable server as a 500 InternalServerError; the openai
        # APIConnectionError it wrapped is still down the chain, so map from that one
        if getattr(exc, "status_code", None) in (None, 500):
            wrapped = _find_in_chain(exc, self._sdk_errors().connection)
            if wrapped is not None:
                return super()._map(wrapped)
        return super()._map(exc)

    def _default_pricing(self) -> Pricing | None:
        # "openai/gpt-4o-mini" -> our row for ("openai", "gpt-4o-mini")
        provider, _, name = self.model.partition("/")
        return price_table.lookup(provider, name) if name else None

    @property
    def profile(self) -> LMProfile:
        # the window of "openai/gpt-4o-mini" is our row for ("openai", "gpt-4o-mini"); litellm's
        # own model map knows more models, but importing litellm takes seconds
        provider, _, name = self.model.partition("/")
        window = price_table.context_window(provider, name) if name else None
        return dataclasses.replace(super().profile, context_window=window)

    def _request(self, messages: list[Message]) -> dict[str, Any]:
        opts = self.options
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            # passed on to the provider SDK's own retries, which honour Retry-After
            "max_retries": opts.max_retries,
        }
        if self.endpoint.base_url:
            request["api_base"] = self.endpoint.base_url
        if self.endpoint.api_key is not None:
            request["api_key"] = self.endpoint.api_key.reveal()
        if opts.timeout is not None:
            request["timeout"] = opts.timeout
        if opts.temperature is not None:
            request["temperature"] = opts.temperature
        if opts.max_tokens is not None:
            request["max_tokens"] = opts.max_tokens  # litellm renames it per provider
        if opts.extra_body:
            request["extra_body"] = dict(opts.extra_body)
        return request

    def _send(self, request: dict[str, Any]) -> Any:
        completion = _litellm().completion
        if threading.current_thread() is not threading.main_thread():
            return completion(**request)
        # On the main thread litellm's sync path calls asyncio.get_event_loop(), which makes
        # and installs a loop that nobody closes (a ResourceWarning as soon as asyncio.run
        # replaces it). Other threads get no implicit loop, so the call is run on one.
        with ThreadPoolExecutor(1, thread_name_prefix="recursor-litellm") as pool:
            return pool.submit(completion, **request).result()

    async def _asend(self, request: dict[str, Any]) -> Any:
        return await _litellm().acompletion(**request)

    def _parse(self, messages: list[Message], response: Any) -> Completion:
        completion = parse_chat_completion(self.name, messages, response, self.pricing)
        if self._explicit_pricing:
            return completion
        cost = self._litellm_cost(completion)
        if cost is None:
            return completion
        usage = dataclasses.replace(completion.usage, cost_usd=cost, unpriced_calls=0)
        return dataclasses.replace(completion, usage=usage)

    def _litellm_cost(self, completion: Completion) -> float | None:
        """litellm's price for the call's tokens, or ``None`` when it does not know the model.

        Priced from the token counts we report (not litellm's), so cost and usage agree.
        """
        try:
            prompt_cost, completion_cost = _litellm().cost_per_token(
                model=self.model,
                prompt_tokens=completion.usage.input_tokens,
                completion_tokens=completion.usage.output_tokens,
            )
        except Exception:  # litellm raises assorted types for "model not mapped"
            return None
        return float(prompt_cost) + float(completion_cost)


def create(model: str, **kw: Unpack[RemoteKwargs]) -> LiteLLMLM:
    """The LM for ``litellm:<provider/model>``; keywords as for :func:`recursor.lm.openai.create`
    (``api_key`` and ``base_url`` are optional: litellm finds each provider's own)."""
    return LiteLLMLM.from_kwargs(model, **kw)
