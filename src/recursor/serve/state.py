"""What every endpoint shares: the server's state, its safety checks (keys, budgets,
profiles), request parsing, and errors in OpenAI's shape (``{"error": {"message", "type",
"code"}}``), so every OpenAI client raises its own typed error with our message in it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from recursor.errors import RecursorError
from recursor.limits import Limits
from recursor.lm.base import LM
from recursor.serve.config import ApiKey, ServeConfig
from recursor.serve.files import FileStore
from recursor.serve.metrics import Metrics
from recursor.serve.models import Served
from recursor.serve.runs import RunManager
from recursor.serve.session_table import SessionTable
from recursor.serve.store import RunStore

__all__ = ["ApiError", "ServerState", "read_json", "state_of"]


class ApiError(RecursorError):
    """An error answered in OpenAI's shape."""

    def __init__(
        self, status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        body = {"error": {"message": self.message, "type": kind, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass(slots=True)
class ServerState:
    config: ServeConfig
    served: Served
    store: RunStore
    files: FileStore
    metrics: Metrics
    runs: RunManager
    sessions: SessionTable

    @classmethod
    def build(cls, config: ServeConfig, lms: dict[str, LM] | None = None) -> ServerState:
        served = Served(config, lms)
        data = config.server.data_dir
        store = RunStore(data)
        metrics = Metrics()
        runs = RunManager(served, store, metrics, max_runs=config.server.max_concurrent_runs)
        files = FileStore(data / "files")
        sessions = SessionTable(config.server.max_sessions)
        return cls(config, served, store, files, metrics, runs, sessions)

    async def aclose(self) -> None:
        await self.runs.shutdown(self.config.server.grace_s)
        self.sessions.close_all()
        self.served.close()
        self.store.close()

    # -- safety -------------------------------------------------------------------------------
    def authorize(self, request: Request) -> ApiKey | None:
        """The caller's key; None when the server has no keys (then it is loopback only)."""
        if not self.config.keys:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            self.metrics.rejected.labels("auth").inc()
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "no_key")
        key = self.config.find_key(token.strip())
        if key is None:
            self.metrics.rejected.labels("auth").inc()
            raise ApiError(401, "invalid API key", "invalid_api_key")
        return key

    def check_budget(self, key: ApiKey | None) -> Limits | None:
        """Refuse a key whose day is spent (429); else what it has left, as limits a run of
        it is held to (so one RLM run cannot spend far past the key's day), or None."""
        if key is None:
            return None
        tokens, usd = self.store.spent_today(key.name)
        over = None
        if key.daily_tokens is not None and tokens >= key.daily_tokens:
            over = f"{tokens:,} of {key.daily_tokens:,} tokens"
        elif key.daily_usd is not None and usd >= key.daily_usd:
            over = f"${usd:.4f} of ${key.daily_usd:.2f}"
        if over is not None:
            self.metrics.rejected.labels("budget").inc()
            raise ApiError(
                429,
                f"daily budget of key {key.name!r} is spent ({over} used today, UTC); "
                "it resets at midnight UTC",
                "budget_exceeded",
            )
        left_tokens = None if key.daily_tokens is None else key.daily_tokens - tokens
        left_usd = None if key.daily_usd is None else key.daily_usd - usd
        return Limits(max_tokens=left_tokens, max_cost_usd=left_usd)

    def profile(self, name: object) -> str:
        if not isinstance(name, str) or name not in self.config.profiles:
            known = ", ".join(sorted(self.config.profiles))
            raise ApiError(404, f"unknown model {name!r}; served: {known}", "model_not_found")
        return name


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.recursor
    return state


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_json")
    return body
