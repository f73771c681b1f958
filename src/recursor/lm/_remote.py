"""What the HTTP backends (openai, anthropic, litellm) share, written once.

* :class:`Secret` keeps an API key out of every repr, str and error message.
* :func:`resolve_endpoint` finds the key and base URL (argument, then environment).
* :class:`CallOptions` groups the per-call knobs every backend accepts.
* :class:`LazyClients` makes one sync and one async SDK client per LM object, on first use.
* :func:`shared_ssl_context` builds the TLS context (the CA bundle load) once per process.
* :class:`SDKErrors` + :func:`map_error` turn an SDK's exceptions into :mod:`recursor.errors`;
  the openai and anthropic SDKs (and litellm, whose exceptions subclass openai's) share one
  exception layout, so one mapper serves all three.
* :func:`call_usage` builds the :class:`~recursor.usage.Usage` of a call, estimating it when
  the server sent none.
* :class:`RemoteLM` is ``complete``/``acomplete`` written once (request, send, parse, map
  errors); :class:`SDKClientLM` adds the lazily made SDK clients. A backend fills in the steps.

Nothing here imports an SDK, so each backend still needs only its own extra installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import math
import os
import re
import ssl
import threading
import time
from abc import abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import (
    Any,
    ClassVar,
    Generic,
    Literal,
    Protocol,
    Self,
    TypedDict,
    TypeVar,
    Unpack,
)

from recursor._closing import Closing
from recursor.errors import (
    AuthenticationError,
    BadResponseError,
    ConfigurationError,
    ContextWindowExceeded,
    LMConnectionError,
    LMError,
    LMTimeoutError,
    RateLimitError,
)
from recursor.lm import pricing as price_table
from recursor.lm.base import CallHints, Completion, LMProfile, Message
from recursor.lm.profile import remote_profile
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
    #: where the key is looked up (``None``: only an explicit key, for litellm)
    key_env: str | None

    def key(self) -> str:
        """The key to send; raises :class:`AuthenticationError` when there is none."""
        if self.api_key is None:
            where = f"set {self.key_env} or pass" if self.key_env else "pass"
            raise AuthenticationError(
                f"no API key for {self.provider}: {where} api_key=... "
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
    key_env: str | None,
    base_url_env: str | None,
) -> Endpoint:
    """The endpoint from explicit arguments, else the environment.

    Local servers (vLLM, llama.cpp, Ollama, ...) ignore the key, so with a ``base_url`` and no
    key we send a placeholder rather than fail; without either, the error waits for the first
    call so that merely naming a model (in a config, a CLI default) never needs a key.
    """
    base = base_url or (os.environ.get(base_url_env) if base_url_env else None) or None
    key = api_key or (os.environ.get(key_env) if key_env else None) or None
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
    #: use the provider's prompt cache (Anthropic breakpoints, OpenAI ``prompt_cache_key``)
    prompt_cache: bool = True


class _SyncClient(Protocol):
    def close(self) -> None: ...


class _AsyncClient(Protocol):
    async def close(self) -> None: ...


_S = TypeVar("_S", bound=_SyncClient)
_A = TypeVar("_A", bound=_AsyncClient)


class LazyClients(Generic[_S, _A]):
    """One sync client, and one async client per event loop, created on first use.

    Clients hold connection pools, so they are reused across calls (a fan-out of 1,000 calls
    must not open 1,000 pools). The async client is per loop because an async connection pool
    is bound to the loop that opened it: ``asyncio.run`` twice with the same LM must not reuse
    the connections of a closed loop.

    Nobody closes an LM at the end of ``asyncio.run(lm.acomplete(...))``, and a pool left open
    when its loop closes leaks sockets (ResourceWarning). So each async client is tied to its
    loop by a one-step async generator: ``asyncio.run`` (any ``asyncio.Runner``) calls
    ``loop.shutdown_asyncgens()`` before closing the loop, which runs the generator's
    ``finally`` and closes the client on its own loop.
    """

    #: async clients per event loop, used in turn. One httpx pool's bookkeeping grows with
    #: queued requests x open connections: at 64 concurrent calls a single client burnt ~10 ms
    #: of CPU per request, and four pools of 16 cut that about 3x (benchmarks/fanout.py). On
    #: the aiohttp transport (the default when installed) 1, 2 or 4 pools measure the same.
    SHARDS = 4

    def __init__(
        self,
        make_sync: Callable[[], _S],
        make_async: Callable[[], _A],
        close_sync: Callable[[_S], None],
        close_async: Callable[[_A], Awaitable[None]],
    ) -> None:
        self._make_sync = make_sync
        self._make_async = make_async
        self._close_sync = close_sync
        self._close_async = close_async
        self._lock = threading.Lock()
        self._sync: _S | None = None
        self._async: dict[asyncio.AbstractEventLoop, list[tuple[_A, AsyncGenerator[None, None]]]]
        self._async = {}
        self._turn = 0

    def sync(self) -> _S:
        with self._lock:
            if self._sync is None:
                self._sync = self._make_sync()
            return self._sync

    async def async_(self) -> _A:
        loop = asyncio.get_running_loop()
        with self._lock:
            shards = self._async.setdefault(loop, [])
            self._turn += 1
            turn = self._turn % self.SHARDS
            if turn < len(shards):
                return shards[turn][0]
            client = self._make_async()
            keeper = self._close_with_loop(loop, client)
            shards.append((client, keeper))
        await keeper.__anext__()  # first step: the loop now knows the generator
        return client

    async def _close_with_loop(
        self, loop: asyncio.AbstractEventLoop, client: _A
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._lock:
                shards = self._async.get(loop, [])
                shards[:] = [entry for entry in shards if entry[0] is not client]
                if not shards:
                    self._async.pop(loop, None)
            await self._close_async(client)

    def close(self) -> None:
        """Close the sync client (async ones close with their loop, or by :meth:`aclose`)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            self._close_sync(client)

    async def aclose(self) -> None:
        """Close the sync client and the async clients of the running loop."""
        self.close()
        with self._lock:
            shards = list(self._async.get(asyncio.get_running_loop(), []))
        for _client, keeper in shards:
            await keeper.aclose()


_ssl_lock = threading.Lock()
_ssl_contexts: dict[tuple[object, str | None, str | None], ssl.SSLContext] = {}


def shared_ssl_context(create: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """``create()`` (an SDK's HTTP library's default-context factory), made once per process.

    Building a TLS context loads the whole CA bundle, ~30 ms of CPU, and every SDK client built
    its own: an LM's async pools are made on the event loop at the first calls of a fan-out,
    so that stalled its first wave. The context is keyed by the environment variables the
    factories read, so changing ``SSL_CERT_FILE``/``SSL_CERT_DIR`` still takes effect.
    """
    key = (create, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _ssl_lock:
        context = _ssl_contexts.get(key)
        if context is None:
            context = _ssl_contexts[key] = create()
        return context


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


def map_error(
    exc: BaseException, errors: SDKErrors, *, lm_name: str, endpoint: Endpoint
) -> LMError:
    """The :mod:`recursor.errors` exception for an SDK exception.

    The message names the model and keeps the provider's own text (shortened, key redacted).
    Raise it ``from safe_cause(exc, endpoint)``.
    """
    # redact before cutting, so a key straddling the cut cannot survive in part
    detail = endpoint.redact(str(exc) or type(exc).__name__)
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "..."
    message = f"{lm_name}: {detail}"
    mapped: LMError
    if is_context_overflow(exc, errors):
        mapped = ContextWindowExceeded(message)
    # the status code decides when there is one: litellm, for one, files a 401 whose body says
    # "invalid_request_error" (as OpenAI's do) under BadRequestError
    elif isinstance(exc, errors.authentication) or _status(exc) in (401, 403):
        mapped = AuthenticationError(message)
    elif isinstance(exc, errors.rate_limit) or _status(exc) == 429:
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
    tokens: tuple[int | None, int | None],
    pricing: Pricing | None,
    cache: tuple[int, int] = (0, 0),
) -> Usage:
    """The usage of one call from the server's (input, output) ``tokens`` and the (read,
    written) tokens of its prompt ``cache``; estimated (and marked so) when it sent no counts.

    Some OpenAI-compatible servers omit ``usage``; a budget must still see the call, so we
    fall back to the documented 4-characters-a-token estimate rather than count zero.
    """
    input_tokens, output_tokens = tokens
    if input_tokens is None or output_tokens is None:
        return Usage.of_call(
            estimate_message_tokens(messages) if input_tokens is None else input_tokens,
            estimate_tokens(text) if output_tokens is None else output_tokens,
            pricing,
            estimated=True,
        )
    return Usage.of_call(input_tokens, output_tokens, pricing, cache=cache)


def int_or_none(value: object) -> int | None:
    """``value`` if it is a real int count (servers sometimes send null or garbage)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ------------------------------------------------------------------------ the LM base


class RemoteKwargs(TypedDict, total=False):
    """The keywords every remote backend's ``create(model, **kw)`` accepts."""

    base_url: str | None
    api_key: str | None
    temperature: float | None
    max_tokens: int | None
    timeout: float | None
    max_retries: int
    extra_body: dict[str, Any] | None
    #: "auto" looks the model up in :mod:`recursor.lm.pricing`; ``None`` means unpriced
    pricing: Pricing | Literal["auto"] | None
    #: use the provider's prompt cache (default True)
    prompt_cache: bool


class RemoteLM(Closing):
    """A model behind an HTTP API: ``complete`` and ``acomplete`` are build request → send →
    parse, with the SDK's exceptions mapped, written once here; a backend supplies the steps.

    The API key lives in a :class:`Secret`, so neither ``repr(lm)`` nor ``vars(lm)`` shows it.
    """

    #: "openai", "anthropic", ...: the prefix of ``name`` and the price-table provider
    provider: ClassVar[str]
    key_env: ClassVar[str | None]
    base_url_env: ClassVar[str | None]
    errors: ClassVar[SDKErrors]
    #: implements the streaming steps (and so :class:`~recursor.lm.base.StreamingLM`)
    can_stream: ClassVar[bool] = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        options: CallOptions | None = None,
        pricing: Pricing | Literal["auto"] | None = "auto",
    ) -> None:
        self.model = model
        self.name = f"{self.provider}:{model}"
        self.options = options or CallOptions()
        self.endpoint = resolve_endpoint(
            self.provider,
            api_key=api_key,
            base_url=base_url,
            key_env=self.key_env,
            base_url_env=self.base_url_env,
        )
        self.pricing = self._default_pricing() if pricing == "auto" else pricing

    @classmethod
    def from_kwargs(cls, model: str, **kw: Unpack[RemoteKwargs]) -> Self:
        unknown = sorted(set(kw) - set(RemoteKwargs.__annotations__))
        if unknown:  # a misspelt option must not be dropped silently
            raise ConfigurationError(
                f"{cls.provider}:{model}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(RemoteKwargs.__annotations__)}"
            )
        options = CallOptions(
            temperature=kw.get("temperature"),
            max_tokens=kw.get("max_tokens"),
            timeout=kw.get("timeout"),
            max_retries=kw.get("max_retries", 2),
            extra_body=kw.get("extra_body"),
            prompt_cache=kw.get("prompt_cache", True),
        )
        return cls(
            model,
            base_url=kw.get("base_url"),
            api_key=kw.get("api_key"),
            options=options,
            pricing=kw.get("pricing", "auto"),
        )

    @property
    def base_url(self) -> str | None:
        return self.endpoint.base_url

    @property
    def profile(self) -> LMProfile:
        """What the core knows of this model (:func:`recursor.lm.profile.remote_profile`)."""
        profile = remote_profile(self.provider, self.model, self.pricing, self.options)
        return dataclasses.replace(profile, streams=self.can_stream)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"

    def complete(self, messages: list[Message]) -> Completion:
        request = self._request(messages)
        try:
            response = self._send(request)
        except self._sdk_errors().base as exc:
            raise self._map(exc) from safe_cause(exc, self.endpoint)
        return self._parse(messages, response)

    async def acomplete(self, messages: list[Message]) -> Completion:
        request = self._request(messages)
        try:
            response = await self._asend(request)
        except self._sdk_errors().base as exc:
            raise self._map(exc) from safe_cause(exc, self.endpoint)
        return self._parse(messages, response)

    def complete_with(self, messages: list[Message], hints: CallHints) -> Completion:
        """:meth:`complete` with hints: streamed when ``hints.on_delta`` is given, with the
        prompt-cache key when the backend sends one."""
        request = self._hinted(self._request(messages), hints)
        try:
            if hints.on_delta is not None:
                return self._stream(messages, request, hints.on_delta)
            response = self._send(request)
        except self._sdk_errors().base as exc:
            raise self._map(exc) from safe_cause(exc, self.endpoint)
        return self._parse(messages, response)

    async def acomplete_with(self, messages: list[Message], hints: CallHints) -> Completion:
        request = self._hinted(self._request(messages), hints)
        try:
            if hints.on_delta is not None:
                return await self._astream(messages, request, hints.on_delta)
            response = await self._asend(request)
        except self._sdk_errors().base as exc:
            raise self._map(exc) from safe_cause(exc, self.endpoint)
        return self._parse(messages, response)

    @abstractmethod
    def close(self) -> None:
        """Release pooled connections (async pools also close by themselves with their loop)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release pooled connections now, the running loop's async pool included."""

    # -- the steps a backend supplies -----------------------------------------------

    def _default_pricing(self) -> Pricing | None:
        return price_table.lookup(self.provider, self.model)

    @abstractmethod
    def _request(self, messages: list[Message]) -> dict[str, Any]:
        """The keyword arguments of the SDK call."""

    @abstractmethod
    def _send(self, request: dict[str, Any]) -> Any: ...

    @abstractmethod
    async def _asend(self, request: dict[str, Any]) -> Any: ...

    @abstractmethod
    def _parse(self, messages: list[Message], response: Any) -> Completion: ...

    def _hinted(self, request: dict[str, Any], hints: CallHints) -> dict[str, Any]:
        """``request`` with what ``hints`` add to it (by default nothing)."""
        return request

    def _stream(
        self, messages: list[Message], request: dict[str, Any], on_delta: Callable[[str], None]
    ) -> Completion:
        """Send ``request`` streamed, ``on_delta`` each piece; the whole completion after."""
        raise NotImplementedError(f"{self.name} cannot stream")  # can_stream is False

    async def _astream(
        self, messages: list[Message], request: dict[str, Any], on_delta: Callable[[str], None]
    ) -> Completion:
        raise NotImplementedError(f"{self.name} cannot stream")

    def _sdk_errors(self) -> SDKErrors:
        return self.errors

    def _map(self, exc: BaseException) -> LMError:
        return map_error(exc, self._sdk_errors(), lm_name=self.name, endpoint=self.endpoint)


class SDKClientLM(RemoteLM, Generic[_S, _A]):
    """A :class:`RemoteLM` that talks through an SDK's sync and async client classes."""

    def __init__(self, model: str, **kw: Any) -> None:
        super().__init__(model, **kw)
        self._clients: LazyClients[_S, _A] = LazyClients(
            lambda: self._new_sync_client(self._client_kwargs()),
            lambda: self._new_async_client(self._client_kwargs()),
            lambda client: client.close(),
            lambda client: client.close(),
        )

    def close(self) -> None:
        self._clients.close()

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _client_kwargs(self) -> dict[str, Any]:
        """Constructor arguments for an openai/anthropic SDK client (they take the same)."""
        kwargs: dict[str, Any] = {
            "api_key": self.endpoint.key(),
            "base_url": self.endpoint.base_url,
            "max_retries": self.options.max_retries,
        }
        if self.options.timeout is not None:
            kwargs["timeout"] = self.options.timeout
        return kwargs

    @abstractmethod
    def _new_sync_client(self, kwargs: dict[str, Any]) -> _S: ...

    @abstractmethod
    def _new_async_client(self, kwargs: dict[str, Any]) -> _A: ...
