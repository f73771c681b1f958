"""Conversations over HTTP (``/v1/sessions``): one REPL across asks, as ``rlm.session`` gives.

- ``POST /v1/sessions`` ``{"model", "context" | "context_file", "limits"?}`` opens one (its
  REPL loads the context once) and answers its id;
- ``POST /v1/sessions/{id}/asks`` ``{"query", "limits"?, "wait"?}`` runs an ask as a job: 202
  and the run's id (follow ``/v1/runs/{id}/events``, read ``/v1/runs/{id}``), or with
  ``"wait": true`` the finished run; an ask while another runs is 409 (asks never interleave);
- ``POST /v1/sessions/{id}/contexts`` ``{"context" | "context_file"}`` binds ``context_1``...;
- ``POST /v1/sessions/{id}/save`` writes the session's JSON under the data directory and
  answers it (questions, answers, cells, sub-call answers; the contexts by hash);
- ``GET /v1/sessions[/{id}]`` lists them / one (asks, usage, contexts); ``DELETE`` closes one
  (its worker stops). An unused session closes after ``server.session_idle_s``.

Each ask is a run like any other: the concurrent-run cap, the key's budget and the metrics see
it. A session belongs to the key that opened it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from recursor._threads import in_daemon_thread
from recursor.errors import RecursorError
from recursor.serve.chat import charger, context_of, key_cap, request_limits
from recursor.serve.config import ApiKey, RLMProfile
from recursor.serve.feed import run_feed
from recursor.serve.runs import TooManyRuns
from recursor.serve.session_table import OpenSession, SessionTable
from recursor.serve.state import ApiError, ServerState, read_json, state_of

router = APIRouter()


def _table(state: ServerState) -> SessionTable:
    return state.sessions


def _find(state: ServerState, sid: str, key: ApiKey | None) -> OpenSession:
    found = state.sessions.get(sid, key)
    if found is None:
        raise ApiError(404, f"session {sid!r} not found", "session_not_found")
    return found


@router.post("/v1/sessions", status_code=201)
async def create_session(request: Request) -> JSONResponse:
    state = state_of(request)
    key = state.authorize(request)
    body = await read_json(request)
    name = state.profile(body.get("model"))
    profile = state.config.profiles[name]
    if not isinstance(profile, RLMProfile):
        raise ApiError(400, f"model {name!r} is a plain model: no sessions", "bad_model")
    context = context_of(state, body)
    if context is None:
        raise ApiError(400, "a session needs 'context' or 'context_file'", "bad_context")
    table = _table(state)
    live = [s for s in table.open.values() if not s.conv.closed]
    if len(live) >= table.limit:
        raise ApiError(429, f"{table.limit} sessions are open; close one first", "too_many")
    limits = request_limits(state, profile, body.get("limits"))
    rlm = state.served.build_rlm(name, limits)
    idle = state.config.server.session_idle_s
    try:
        conv = await in_daemon_thread(lambda: rlm.session(context=context, idle_timeout_s=idle))
    except RecursorError as exc:
        rlm.close()
        raise ApiError(400, f"the session could not start: {exc}", "session_failed") from None
    except BaseException:
        rlm.close()
        raise
    sid = "sess_" + uuid.uuid4().hex[:20]
    opened = OpenSession(sid, name, None if key is None else key.name, rlm, conv)
    table.open[sid] = opened
    return JSONResponse(opened.info(), status_code=201)


@router.get("/v1/sessions")
async def list_sessions(request: Request) -> dict[str, Any]:
    state = state_of(request)
    key = state.authorize(request)
    mine = None if key is None else key.name
    rows = [s.info() for s in _table(state).open.values() if s.key == mine and not s.conv.closed]
    return {"object": "list", "data": rows}


@router.get("/v1/sessions/{sid}")
async def get_session(request: Request, sid: str) -> dict[str, Any]:
    state = state_of(request)
    return _find(state, sid, state.authorize(request)).info()


@router.delete("/v1/sessions/{sid}")
async def delete_session(request: Request, sid: str) -> dict[str, Any]:
    state = state_of(request)
    found = _find(state, sid, state.authorize(request))
    _table(state).open.pop(sid, None)
    await in_daemon_thread(found.close)  # waits for an ask that is running
    return found.info()


@router.post("/v1/sessions/{sid}/asks", status_code=202)
async def ask(request: Request, sid: str) -> JSONResponse:
    state = state_of(request)
    key = state.authorize(request)
    found = _find(state, sid, key)
    body = await read_json(request)
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise ApiError(400, "'query' must be a non-empty string", "bad_query")
    if found.conv.busy:
        raise ApiError(409, "another ask of this session is running", "session_busy")
    profile = state.config.profiles[found.profile]
    assert isinstance(profile, RLMProfile)
    limits = request_limits(state, profile, body.get("limits"))
    limits = key_cap(state.check_budget(key), limits)
    try:
        run = state.runs.start_feed(
            found.profile,
            query,
            run_feed(found.conv.astream(query, limits=limits)),
            limits,
            None if key is None else key.name,
            charger(state, key),
        )
    except TooManyRuns as exc:
        retry = str(state.config.server.retry_after_s)
        raise ApiError(429, str(exc), "too_many_runs", {"retry-after": retry}) from None
    headers = {"x-recursor-run-id": run.id}
    if body.get("wait"):
        await state.runs.wait(run)
        row = state.store.get(run.id)
        assert row is not None
        return JSONResponse(row.to_dict(), status_code=200, headers=headers)
    row = state.store.get(run.id)
    assert row is not None
    return JSONResponse(row.to_dict(), status_code=202, headers=headers)


@router.post("/v1/sessions/{sid}/contexts")
async def add_context(request: Request, sid: str) -> dict[str, Any]:
    state = state_of(request)
    found = _find(state, sid, state.authorize(request))
    body = await read_json(request)
    context = context_of(state, body)
    if context is None:
        raise ApiError(400, "give 'context' or 'context_file'", "bad_context")
    try:
        name = await in_daemon_thread(found.conv.add_context, context)
    except RecursorError as exc:
        raise ApiError(409, str(exc), "session_busy") from None
    return {"name": name, **found.info()}


@router.post("/v1/sessions/{sid}/save")
async def save(request: Request, sid: str) -> dict[str, Any]:
    state = state_of(request)
    found = _find(state, sid, state.authorize(request))
    folder = Path(state.config.server.data_dir) / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = await in_daemon_thread(found.conv.save, folder / f"{sid}.json")
    except RecursorError as exc:
        raise ApiError(409, str(exc), "session_busy") from None
    data: dict[str, Any] = json.loads(await asyncio.to_thread(path.read_text, "utf-8"))
    return {"id": sid, "path": str(path), "session": data}
