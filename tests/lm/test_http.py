"""The HTTP clients under the async SDK clients (recursor.lm._http): the aiohttp transport when
installed, httpx2 otherwise, and the correction of the openai bridge's connection errors."""

from __future__ import annotations

import asyncio
import importlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("httpx2")

import aiohttp
import httpx2

from recursor.lm._http import AioHttpErrorsCorrected, ConnectErrorsCorrected, async_http_client
from recursor.lm._remote import shared_ssl_context


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def refused_error(client: httpx2.AsyncClient) -> BaseException:
    async with client:
        with pytest.raises(httpx2.TransportError) as info:
            await client.get(f"http://127.0.0.1:{closed_port()}/", timeout=5)
    return info.value


class _NoAiohttp(httpx2.AsyncClient):
    """What both SDKs put in place of their aiohttp client when aiohttp is missing."""

    def __init__(self, **_kwargs: Any) -> None:
        raise RuntimeError("To use the aiohttp client you must have installed ...")


def test_falls_back_to_httpx2_without_aiohttp() -> None:
    made: list[dict[str, Any]] = []

    class Httpx(httpx2.AsyncClient):
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(**kwargs)

    client = async_http_client(_NoAiohttp, Httpx)
    assert type(client) is Httpx
    assert made == [{"verify": shared_ssl_context(httpx2.create_ssl_context)}]
    asyncio.run(client.aclose())


def test_prefers_the_aiohttp_client() -> None:
    class Aio(httpx2.AsyncClient):
        pass

    client = async_http_client(Aio, _NoAiohttp)
    assert type(client) is Aio
    asyncio.run(client.aclose())


# The correction exists because of this fact; when openai fixes its bridge this test fails,
# and AioHttpErrorsCorrected can go (anthropic's bridge was fixed within 2.x; from 2.0 on the
# range we support, so the correction stays on both).


def test_openai_bridge_still_files_a_refused_connection_as_a_timeout() -> None:
    openai = pytest.importorskip("openai")
    error = asyncio.run(refused_error(openai.DefaultAioHttpClient()))
    assert type(error) is httpx2.ConnectTimeout
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_the_backends_clients_file_it_as_a_connect_error(backend: str) -> None:
    pytest.importorskip(backend)
    module = importlib.import_module(f"recursor.lm.{backend}")
    client = module.async_http_client()
    assert type(client).__mro__[1] is AioHttpErrorsCorrected  # the aiohttp client, corrected
    error = asyncio.run(refused_error(client))
    assert type(error) is httpx2.ConnectError
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)


# ConnectErrorsCorrected against a fake bridge, for what a real server cannot easily provoke


def misfiled(cause: BaseException) -> httpx2.ConnectTimeout:
    """What the openai bridge raises for ``cause``."""
    error = httpx2.ConnectTimeout(str(cause))
    error.__cause__ = cause
    return error


class _FailingStream(httpx2.AsyncByteStream):
    def __init__(self, cause: BaseException) -> None:
        self.cause = cause

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"partial"
        raise misfiled(self.cause)


class _FakeBridge(httpx2.AsyncBaseTransport):
    def __init__(self, cause: BaseException, *, in_body: bool = False) -> None:
        self.cause, self.in_body = cause, in_body

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.in_body:
            return httpx2.Response(200, stream=_FailingStream(self.cause), request=request)
        raise misfiled(self.cause)


def fetch(bridge: _FakeBridge) -> BaseException:
    async def go() -> None:
        async with httpx2.AsyncClient(transport=ConnectErrorsCorrected(bridge)) as client:
            await client.get("http://127.0.0.1:1/")

    with pytest.raises(httpx2.TransportError) as info:
        asyncio.run(go())
    return info.value


@pytest.mark.parametrize("in_body", [False, True])
def test_a_dropped_connection_becomes_a_connect_error(in_body: bool) -> None:
    cause = aiohttp.ServerDisconnectedError()
    error = fetch(_FakeBridge(cause, in_body=in_body))
    assert type(error) is httpx2.ConnectError
    assert error.__cause__ is cause


def test_a_real_connect_timeout_stays_a_timeout() -> None:
    error = fetch(_FakeBridge(aiohttp.ConnectionTimeoutError()))
    assert type(error) is httpx2.ConnectTimeout


def test_other_causes_are_left_alone() -> None:
    error = fetch(_FakeBridge(OSError("not aiohttp's")))
    assert type(error) is httpx2.ConnectTimeout
