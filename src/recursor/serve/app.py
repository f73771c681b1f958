"""The ASGI app: middleware (body size, security headers), the small endpoints, and the
routers: chat in :mod:`recursor.serve.chat`, jobs and files in :mod:`recursor.serve.jobs`,
the run page in :mod:`recursor.serve.page`; shared state and errors in
:mod:`recursor.serve.state`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recursor.lm.base import LM
from recursor.serve import chat, jobs, page, sessions
from recursor.serve.config import RLMProfile, ServeConfig
from recursor.serve.state import ApiError, ServerState, state_of

__all__ = ["CSP", "create_app"]

#: the policy of every response: nothing may load from elsewhere, no inline script
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, by Content-Length or by counting
    (a chunked body has no length); uploads to ``/v1/files`` have their own, larger cap."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/v1/files"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ApiError(413, self._message(), "body_too_large")
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request body over {self.limit:,} bytes; upload large contexts to /v1/files"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await ApiError(413, self._message(), "body_too_large").response()(scope, receive, send)


class SecurityHeaders:
    """The CSP and its companions on every response. Plain ASGI, not ``@app.middleware``:
    Starlette's BaseHTTPMiddleware hides a client's disconnect from the endpoint, and a
    non-streamed chat request must see it to cancel its run."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", CSP)
                headers["x-content-type-options"] = "nosniff"
                headers["referrer-policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(config: ServeConfig, lms: dict[str, LM] | None = None) -> FastAPI:
    """The server for ``config``; ``lms`` hands in model objects by spec (tests, benchmarks)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServerState.build(config, lms)
        app.state.recursor = state
        try:
            yield
        finally:
            await state.aclose()

    app = FastAPI(title="recursor", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=config.server.max_body_bytes)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        state = state_of(request)
        return {"ok": True, "runs_active": len(state.runs.live), "accepting": state.runs.accepting}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        state = state_of(request)
        state.authorize(request)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        state = state_of(request)
        state.authorize(request)
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "recursor",
                "kind": "rlm" if isinstance(p, RLMProfile) else "model",
            }
            for name, p in state.config.profiles.items()
        ]
        return {"object": "list", "data": data}

    app.include_router(chat.router)
    app.include_router(jobs.router)
    app.include_router(sessions.router)
    app.include_router(page.router)
    return app
