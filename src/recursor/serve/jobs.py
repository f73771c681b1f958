"""Jobs (``/v1/runs``) and uploaded files (``/v1/files``).

A job is a run that outlives its request: ``POST /v1/runs`` answers 202 with the run's id at
once; ``GET /v1/runs/{id}`` gives its state and result; ``GET /v1/runs/{id}/events`` streams
its typed events as SSE, each with its sequence number as the SSE id, so a client that lost
the stream resumes with ``Last-Event-ID`` (or ``?after=N``) and misses nothing; ``DELETE``
cancels it. Runs and events are in SQLite: a finished run's events are served from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from recursor.serve.chat import start_run
from recursor.serve.files import UploadError
from recursor.serve.state import ApiError, ServerState, read_json, state_of
from recursor.trace.jsonl import dumps

router = APIRouter()


def _row(state: ServerState, run_id: str) -> dict[str, Any]:
    row = state.store.get(run_id)
    if row is None:
        raise ApiError(404, f"run {run_id!r} not found", "run_not_found")
    return row.to_dict()


@router.post("/v1/runs", status_code=202)
async def create_run(request: Request) -> JSONResponse:
    state = state_of(request)
    key = state.authorize(request)
    body = await read_json(request)
    run = start_run(state, body, key)
    return JSONResponse(_row(state, run.id), status_code=202, headers={"x-recursor-run-id": run.id})


@router.get("/v1/runs")
async def list_runs(request: Request, limit: int = 100) -> dict[str, Any]:
    state = state_of(request)
    state.authorize(request)
    rows = state.store.recent(max(1, min(limit, 1000)))
    return {"object": "list", "data": [r.to_dict() for r in rows]}


@router.get("/v1/runs/{run_id}")
async def get_run(request: Request, run_id: str) -> dict[str, Any]:
    state = state_of(request)
    state.authorize(request)
    return _row(state, run_id)


@router.delete("/v1/runs/{run_id}")
async def cancel_run(request: Request, run_id: str) -> dict[str, Any]:
    state = state_of(request)
    state.authorize(request)
    _row(state, run_id)
    await state.runs.cancel(run_id)
    return _row(state, run_id)


@router.get("/v1/runs/{run_id}/events")
async def run_events(request: Request, run_id: str, after: int | None = None) -> Response:
    state = state_of(request)
    state.authorize(request)
    _row(state, run_id)
    last = request.headers.get("last-event-id")
    start = after if after is not None else int(last) if last and last.isdigit() else 0
    if start < 0:
        raise ApiError(400, "'after' must be >= 0", "bad_after")
    return StreamingResponse(
        _events(state, run_id, start),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-recursor-run-id": run_id},
    )


async def _events(state: ServerState, run_id: str, after: int) -> AsyncIterator[str]:
    async for seq, event in state.runs.follow(run_id, after):
        yield f"id: {seq}\nevent: {event.get('type', 'event')}\ndata: {dumps(event)}\n\n"
    row = state.store.get(run_id)
    end = {} if row is None else {"state": row.state, "answer": row.answer}
    yield f"event: end\ndata: {dumps(end)}\n\n"


# -- files --------------------------------------------------------------------------------------
@router.post("/v1/files")
async def upload_file(request: Request) -> dict[str, Any]:
    state = state_of(request)
    state.authorize(request)
    try:
        return await state.files.receive(request, state.config.server.max_file_bytes)
    except UploadError as exc:
        raise ApiError(exc.status, str(exc), exc.code) from None


@router.get("/v1/files/{file_id}")
async def get_file(request: Request, file_id: str) -> dict[str, Any]:
    state = state_of(request)
    state.authorize(request)
    info = state.files.info(file_id)
    if info is None:
        raise ApiError(404, f"file {file_id!r} not found", "file_not_found")
    return info


@router.delete("/v1/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> dict[str, Any]:
    state = state_of(request)
    state.authorize(request)
    if not state.files.delete(file_id):
        raise ApiError(404, f"file {file_id!r} not found", "file_not_found")
    return {"id": file_id, "object": "file", "deleted": True}
