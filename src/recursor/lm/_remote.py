"""What the HTTP backends (openai, anthropic, litellm) share, written once.

* :class:`Secret` keeps an API key out of every repr, str and error message.
* :func:`resolve_endpoint` finds the key and base URL (argument, then environment).
* :class:`CallOptions` groups the per-call knobs every backend accepts.
* :class:`LazyClients` makes one sync and one async SDK client per LM object, on first use.
* :class:`SDKErrors` + :func:`map_error` turn an SDK's exceptions into :mod:`recursor.errors`;
  the openai and anthropic SDKs (and litellm, whose exceptions subclass openai's) share one
  exception layout, so one mapper serves all three.
* :func:`call_usage` builds the :class:`~recursor.usage.Usage` of a call, estimating it when
  the server sent none.

Nothing here imports an SDK, so each backend still needs only its own extra installed.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from recursor.errors import (
    AuthenticationError,
    BadResponseError,
    ContextWindowExceeded,
    LMConnectionError,
    LMError,
    LMTimeoutError,
    RateLimitError,
)
from recursor.lm.base import Message
from recursor.usage import Pricing, Usage, estimate_message_tokens, estimate_tokens

#: sent when a custom server needs no key: the SDKs refuse to start without one
PLACEHOLDER_API_KEY = "no-key-needed"

#: how much of a provider's error text we keep in ours (bodies can be whole HTML pages)
_MAX_DETAIL = 600


class Secret:
    """A string that never shows itself: ``repr``/``str`` print ``'***'``; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the secret replaced (a server may echo the key)."""
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class Endpoint:
    """Where a backend sends requests, and with which key."""

    provider: str
    base_url: str | None
    #: ``None`` when no key was found and the official API (no ``base_url``) needs one
    api_key: Secret | None
    key_env: str

    def key(self) -> str:
        """The key to send; raises :class:`AuthenticationError` when there is none."""
        if self.api_key is None:
            raise AuthenticationError(
                f"no API key for {self.provider}: set {self.key_env} or pass api_key=... "
                "(a server given by base_url=... that needs no key works without one)"
            )
        return self.api_key.reveal()

    def redact(self, text: str) -> str:
        return self.api_key.redact(text) if self.api_key is not None else text

    def __repr__(self) -> str:
        return f"Endpoint(provider={self.provider!r}, base_url={self.base_url!r})"


def resolve_endpoint(
    provider: str,
    *,
    api_key: str | None,
    base_url: str | None,
    key_env: str,
    base_url_env: str | None,
) -> Endpoint:
    """The endpoint from explicit arguments, else the environment.

    Local servers (vLLM, llama.cpp, Ollama, ...) ignore the key, so with a ``base_url`` and no
    key we send a placeholder rather than fail; without either, the error waits for the first
    call so that merely naming a model (in a config, a CLI default) never needs a key.
    """
    base = base_url or (os.environ.get(base_url_env) if base_url_env else None) or None
    key = api_key or os.environ.get(key_env) or None
    if key is None and base is not None:
        key = PLACEHOLDER_API_KEY
    return Endpoint(provider, base, Secret(key) if key is not None else None, key_env)


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call knobs. ``None`` means "the provider's default" and is not sent."""

    temperature: float | None = None
    max_tokens: int | None = None
    #: seconds for one HTTP attempt (the SDK's default when ``None``)
    timeout: float | None = None
    #: retries done by the SDK itself (429, 5xx, connection errors), honouring Retry-After
    max_retries: int = 2
    #: merged into the JSON body as is, for server-specific parameters
    extra_body: Mapping[str, Any] | None = field(default=None, hash=False)


_S = TypeVar("_S")
_A = TypeVar("_A")


class LazyClients(Generic[_S, _A]):
    """One sync client, and one async client per event loop, created on first use.

    Clients hold connection pools, so they are reused across calls (a fan-out of 1,000 calls
    must not open 1,000 pools). The async client is per loop because an async connection pool
    is bound to the loop that opened it: ``asyncio.run`` twice with the same LM would otherwise
    reuse connections of a closed loop. Entries vanish with their loop (weak keys).
    """

    def __init__(self, make_sync: Callable[[], _S], make_async: Callable[[], _A]) -> None:
        self._make_sync = make_sync
        self._make_async = make_async
        self._lock = threading.Lock()
        self._sync: _S | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _A] = (
            weakref.WeakKeyDictionary()
        )

    def sync(self) -> _S:
        with self._lock:
            if self._sync is None:
                self._sync = self._make_sync()
            return self._sync

    def async_(self) -> _A:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                client = self._async[loop] = self._make_async()
            return client

    def close(self, close_sync: Callable[[_S], None]) -> None:
        """Close the sync client (the async ones need their loop: see :meth:`aclose`)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            close_sync(client)

    async def aclose(self, close_async: Callable[[_A], Awaitable[None]]) -> None:
        """Close the async client of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.pop(loop, None)
        if client is not None:
            await close_async(client)


# ---------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class SDKErrors:
    """One SDK's exception classes, by the role they play."""

    #: the root every SDK error derives from (what a backend catches)
    base: tuple[type[BaseException], ...]
    authentication: tuple[type[BaseException], ...]
    rate_limit: tuple[type[BaseException], ...]
    #: checked before ``connection``: in both SDKs a timeout is a kind of connection error
    timeout: tuple[type[BaseException], ...]
    connection: tuple[type[BaseException], ...]
    #: classes that *are* a context overflow, whatever their text says (litellm has one)
    context_window: tuple[type[BaseException], ...] = ()


# OpenAI's code, vLLM/llama.cpp/Ollama wording, Anthropic's "prompt is too long: N tokens > M".
_CONTEXT_WORDING = re.compile(
    r"context[_ ](?:length|window|size|limit)|maximum context|prompt is too long"
    r"|too many (?:input )?tokens|input is too long|exceed_context_size",
    re.IGNORECASE,
)
_CONTEXT_STATUSES = frozenset({400, 413, 422})


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _headers(exc: BaseException) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) else None


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            pass
        else:
            return value if math.isfinite(value) and value >= 0 else None
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return value if math.isfinite(value) and value >= 0 else None


def is_context_overflow(exc: BaseException, errors: SDKErrors) -> bool:
    if errors.context_window and isinstance(exc, errors.context_window):
        return True
    if _status(exc) not in _CONTEXT_STATUSES:
        return False
    code = getattr(exc, "code", None)
    return code == "context_length_exceeded" or bool(_CONTEXT_WORDING.search(str(exc)))


def map_error(exc: BaseException, errors: SDKErrors, *, lm_name: str, endpoint: Endpoint) -> LMError:
    """The :mod:`recursor.errors` exception for an SDK exception.

    The message names the model and keeps the provider's own text (shortened, key redacted).
    Raise it ``from safe_cause(exc, endpoint)``.
    """
    detail = str(exc) or type(exc).__name__
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "..."
    message = endpoint.redact(f"{lm_name}: {detail}")
    mapped: LMError
    if is_context_overflow(exc, errors):
        mapped = ContextWindowExceeded(message)
    elif isinstance(exc, errors.authentication):
        mapped = AuthenticationError(message)
    elif isinstance(exc, errors.rate_limit):
        mapped = RateLimitError(message, retry_after=parse_retry_after(_headers(exc)))
    elif isinstance(exc, errors.timeout):
        mapped = LMTimeoutError(message)
    elif isinstance(exc, errors.connection):
        mapped = LMConnectionError(message)
    else:
        # other 4xx/5xx, undecodable bodies: the server answered, with nothing we can use
        mapped = BadResponseError(message)
    return mapped


def safe_cause(exc: BaseException, endpoint: Endpoint) -> BaseException | None:
    """``exc`` to chain for debugging, or ``None`` when its text holds the key (a server that
    echoes the key back must not get it printed in a traceback)."""
    text = str(exc)
    return exc if endpoint.redact(text) == text else None


# ----------------------------------------------------------------------------- usage


def call_usage(
    messages: list[Message],
    text: str,
    input_tokens: int | None,
    output_tokens: int | None,
    pricing: Pricing | None,
) -> Usage:
    """The usage of one call; estimated (and marked so) when the server sent no counts.

    Some OpenAI-compatible servers omit ``usage``; a budget must still see the call, so we
    fall back to the documented 4-characters-a-token estimate rather than count zero.
    """
    if input_tokens is None or output_tokens is None:
        return Usage.of_call(
            estimate_message_tokens(messages) if input_tokens is None else input_tokens,
            estimate_tokens(text) if output_tokens is None else output_tokens,
            pricing,
            estimated=True,
        )
    return Usage.of_call(input_tokens, output_tokens, pricing)


def int_or_none(value: object) -> int | None:
    """``value`` if it is a real int count (servers sometimes send null or garbage)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
