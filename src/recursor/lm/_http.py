"""The HTTP client under an async SDK client, shared by the openai and anthropic backends.

Both SDKs speak ``httpx2`` and offer the same two async clients: ``DefaultAioHttpClient``
(aiohttp underneath, through a vendored copy of httpx-aiohttp's bridge) and
``DefaultAsyncHttpxClient``. aiohttp is the one we take: at 64 concurrent calls it spends about
40% less client CPU per request than httpx2's pool (1.8 against 3.4 ms with openai 3.57,
``benchmarks/fanout.py``). When aiohttp is missing the SDK's ``DefaultAioHttpClient`` is a
stand-in whose constructor raises ``RuntimeError``; :func:`async_http_client` then falls back
to httpx2, so the backends work, only slower, without the ``[aiohttp]`` extra.

:class:`AioHttpErrorsCorrected` goes on top of an SDK's aiohttp client: the bridge files
aiohttp's connection errors, a refused or dropped connection included, as
``httpx2.ConnectTimeout``, which the SDK then reports as a timeout. openai's copy still does
(3.0 to 3.57 at least), as did anthropic's until a later 2.x; with a corrected bridge it
changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2

from recursor.lm._remote import shared_ssl_context

try:
    import aiohttp
except ImportError:  # pragma: no cover - depends on the install
    _AIOHTTP_CONNECTION_ERRORS: tuple[type[Exception], ...] = ()
else:
    _AIOHTTP_CONNECTION_ERRORS = (aiohttp.ClientConnectionError,)

__all__ = ["AioHttpErrorsCorrected", "ConnectErrorsCorrected", "async_http_client"]


def async_http_client(
    aiohttp_client: Callable[..., httpx2.AsyncClient],
    httpx_client: Callable[..., httpx2.AsyncClient],
) -> httpx2.AsyncClient:
    """``aiohttp_client()`` (an SDK's aiohttp client class) if aiohttp is installed, else
    ``httpx_client()``; with the SDK's defaults and the process's shared TLS context."""
    verify = shared_ssl_context(httpx2.create_ssl_context)
    try:
        return aiohttp_client(verify=verify)
    except RuntimeError:  # the SDKs' stand-in when aiohttp is missing (or too old)
        return httpx_client(verify=verify)


@contextlib.contextmanager
def _connect_errors_corrected() -> Iterator[None]:
    """A refused or dropped connection as ``httpx2.ConnectError``, the way httpx2's own
    transport (and anthropic 2.15's bridge) files it, where the bridge said ``ConnectTimeout``.
    Real timeouts (aiohttp's are ``TimeoutError``\\ s) stay timeouts."""
    try:
        yield
    except httpx2.ConnectTimeout as exc:
        cause = exc.__cause__
        if isinstance(cause, _AIOHTTP_CONNECTION_ERRORS) and not isinstance(cause, TimeoutError):
            raise httpx2.ConnectError(str(exc)) from cause
        raise


class _CorrectedStream(httpx2.AsyncByteStream):
    """A response body whose read errors are corrected as above (a dropped connection
    mid-body comes out of the bridge as ``ConnectTimeout`` too)."""

    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _connect_errors_corrected():
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _connect_errors_corrected():
            await self._inner.aclose()


class ConnectErrorsCorrected(httpx2.AsyncBaseTransport):
    """``inner`` (an aiohttp bridge's transport) with :func:`_connect_errors_corrected`."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        with _connect_errors_corrected():
            response = await self.inner.handle_async_request(request)
        if isinstance(response.stream, httpx2.AsyncByteStream):
            response.stream = _CorrectedStream(response.stream)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class AioHttpErrorsCorrected(httpx2.AsyncClient):
    """Put first among the bases of a subclass of an SDK's ``DefaultAioHttpClient``: its
    transports, proxy ones included, are wrapped in :class:`ConnectErrorsCorrected`; the SDK's
    defaults (timeout, pool limits, redirects) stay its own."""

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return ConnectErrorsCorrected(super()._init_transport(*args, **kwargs))

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return ConnectErrorsCorrected(super()._init_proxy_transport(*args, **kwargs))
