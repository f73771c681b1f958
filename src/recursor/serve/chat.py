"""``POST /v1/chat/completions`` in OpenAI's format, streamed (SSE chunks) or not.

Which requests become RLM runs (profile kind ``rlm``):
- ``context`` (text) or ``context_file`` (an uploaded file's id) in the body (the openai
  client's ``extra_body``): the last user message is the query;
- drop-in mode, without them: when the messages before the last user turn are longer than
  the profile's ``inline_limit`` characters they become the context, and the last user turn the
  query; when the last message alone is, it is the context. Below the limit the request goes
  to the root model as it is, so short chats cost one call.

Progress streams as ``delta.reasoning_content`` (one line per model call, cell, sub-call),
the answer as ``delta.content``; ``usage`` is the whole tree's; ``x-recursor-run-id`` names
the run. A client that goes away cancels its run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from recursor.limits import Limits
from recursor.lm.base import Message
from recursor.serve.config import ApiKey, LimitsConfig, RLMProfile
from recursor.serve.progress import progress_line
from recursor.serve.runs import Outcome, Run, TooManyRuns, whole_usage
from recursor.serve.state import ApiError, ServerState, read_json, state_of
from recursor.trace.jsonl import dumps

router = APIRouter()

#: the query of a run whose context is the user's single, huge message
SELF_QUERY = "The context is the user's message. Do what it asks and answer it."
#: how often a non-streamed request looks whether its client is still there
DISCONNECT_POLL_S = 0.25


def _text(content: object) -> str:
    """A message's text: a string, or OpenAI's list of parts (text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    if content is None:
        return ""
    raise ApiError(400, "message content must be a string or a list of parts", "bad_messages")


def parse_messages(body: dict[str, Any]) -> list[Message]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'messages' must be a non-empty list", "bad_messages")
    out: list[Message] = []
    for m in raw:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, "each message needs a 'role' and 'content'", "bad_messages")
        out.append({"role": m["role"], "content": _text(m.get("content"))})
    return out


def request_limits(state: ServerState, profile: RLMProfile, raw: object) -> Limits:
    """The profile's limits, tightened (never raised) by the request's ``limits`` object, under
    the server's wall time per request."""
    limits = profile.limits.apply(Limits())
    if raw is not None:
        if not isinstance(raw, dict):
            raise ApiError(400, "'limits' must be an object", "bad_limits")
        try:
            limits = LimitsConfig.model_validate(raw).tighten(limits)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(400, f"limits.{where}: {first['msg']}", "bad_limits") from None
    cap = state.config.server.request_timeout_s
    timeout = cap if limits.timeout_s is None else min(limits.timeout_s, cap)
    from dataclasses import replace

    return replace(limits, timeout_s=timeout)


def split_conversation(messages: list[Message], inline_limit: int) -> tuple[str, str] | None:
    """(query, context) when the conversation is too long to send as it is, else None."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last is None:
        return None
    earlier = messages[:last]
    size = sum(len(m["content"]) for m in earlier)
    if size > inline_limit:
        transcript = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in earlier)
        return messages[last]["content"], transcript
    if len(messages[last]["content"]) > inline_limit:
        return SELF_QUERY, messages[last]["content"]
    return None


def context_of(state: ServerState, body: dict[str, Any]) -> str | Path | None:
    text, file_id = body.get("context"), body.get("context_file")
    if text is not None and file_id is not None:
        raise ApiError(400, "give 'context' or 'context_file', not both", "bad_context")
    if text is not None:
        if not isinstance(text, str):
            raise ApiError(400, "'context' must be a string", "bad_context")
        return text
    if file_id is not None:
        path = state.files.path(str(file_id))
        if path is None:
            raise ApiError(404, f"context file {file_id!r} not found", "file_not_found")
        return path
    return None


def start_run(state: ServerState, body: dict[str, Any], key: ApiKey | None) -> Run:
    """Validate a chat or job request and start its run (RLM or direct)."""
    name = state.profile(body.get("model"))
    profile = state.config.profiles[name]
    if "messages" in body:
        messages = parse_messages(body)
    elif isinstance(body.get("query"), str):
        messages = [{"role": "user", "content": body["query"]}]
    else:
        raise ApiError(400, "give 'messages' (or 'query' for a job)", "bad_messages")
    context: str | Path | None = context_of(state, body)
    left = state.check_budget(key)
    key_name = None if key is None else key.name
    on_end = charger(state, key)
    direct_timeout = state.config.server.request_timeout_s
    capped = None
    if isinstance(profile, RLMProfile):
        limits = request_limits(state, profile, body.get("limits"))
        if left is not None and key is not None:
            # the key's day: a hard cap on this run's tree, not only a gate
            capped, limits = key.name, key_cap(left, limits)
        direct_timeout = limits.timeout_s or direct_timeout
        if context is not None:
            query = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            split: tuple[str, str | Path] | None = (query, context)
        else:
            split = split_conversation(messages, profile.inline_limit)
    elif context is not None:
        raise ApiError(400, f"model {name!r} is a plain model: no context", "bad_context")
    else:
        split = None
    try:
        if split is None:
            return state.runs.start_model(name, messages, direct_timeout, key_name, on_end)
        run = state.runs.start_rlm(name, split[0], split[1], limits, key_name, on_end)
    except TooManyRuns as exc:
        retry = str(state.config.server.retry_after_s)
        raise ApiError(429, str(exc), "too_many_runs", {"retry-after": retry}) from None
    run.capped_by = capped
    return run


def key_cap(left: Limits | None, limits: Limits) -> Limits:
    """``limits`` tightened to what an API key has left of its day (``check_budget``): a hard
    cap on a run's tree, not only a gate; unchanged for a key without a budget."""
    if left is None:
        return limits
    tight = LimitsConfig(max_tokens=left.max_tokens, max_cost_usd=left.max_cost_usd)
    return tight.tighten(limits)


def charger(state: ServerState, key: ApiKey | None) -> Any:
    def charge(outcome: Outcome) -> None:
        if key is not None:
            total = outcome.usage.total
            state.store.charge(key.name, total.total_tokens, total.cost_usd or 0.0)

    return charge


def _finish_reason(outcome: Outcome) -> str:
    return "stop" if outcome.answer is not None else "length"


def _completion(run: Run, outcome: Outcome) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + run.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": run.profile,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.answer},
                "finish_reason": _finish_reason(outcome),
            }
        ],
        "usage": whole_usage(outcome.usage),
        "recursor": {
            "run_id": run.id,
            "kind": run.kind,
            "stop_reason": outcome.stop_reason,
            "error": outcome.error,
        },
    }


def _refusal(run: Run, outcome: Outcome) -> ApiError | None:
    """The error a run without an answer is reported as: 502 when it failed, 429 when the
    API key's day stopped it; None when it ended by its own limits (an answer of null)."""
    if outcome.answer is not None:
        return None
    if outcome.stop_reason in {"error", "cancelled"}:
        return ApiError(502, f"the run failed: {outcome.error}", "run_failed")
    if outcome.stop_reason == "budget" and run.capped_by is not None:
        return ApiError(
            429,
            f"daily budget of key {run.capped_by!r} is spent: the run stopped at what the key "
            f"had left today ({outcome.error}); it resets at midnight UTC",
            "budget_exceeded",
        )
    return None


async def _wait_or_disconnect(state: ServerState, request: Request, run: Run) -> Outcome | None:
    waiter = asyncio.ensure_future(state.runs.wait(run))
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=DISCONNECT_POLL_S)
            if done:
                return waiter.result()
            if await request.is_disconnected():
                await state.runs.cancel(run.id)
                return None
    finally:
        if not waiter.done():  # this request was cancelled: its run goes with it
            waiter.cancel()
            if run.task is not None:
                run.task.cancel()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    state = state_of(request)
    key = state.authorize(request)
    body = await read_json(request)
    stream = bool(body.get("stream"))
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    run = start_run(state, body, key)
    headers = {"x-recursor-run-id": run.id}
    if stream:
        return StreamingResponse(
            _chunks(state, run, include_usage),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )
    outcome = await _wait_or_disconnect(state, request, run)
    if outcome is None:
        return Response(status_code=499)  # nobody reads it; nginx's "client closed request"
    refusal = _refusal(run, outcome)
    if refusal is not None:
        refusal.headers.update(headers)
        return refusal.response()
    return JSONResponse(_completion(run, outcome), headers=headers)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {dumps(data, ensure_ascii=False)}\n\n"


async def _chunks(state: ServerState, run: Run, include_usage: bool) -> AsyncIterator[str]:
    base = {
        "id": "chatcmpl-" + run.id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": run.profile,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for _seq, event in state.runs.follow(run.id):
            line = progress_line(event)
            if line:
                yield chunk({"reasoning_content": line + "\n"})
        outcome = run.outcome
        assert outcome is not None
        refusal = _refusal(run, outcome)
        if refusal is not None:
            yield _sse({"error": {"message": refusal.message, "code": refusal.code}})
        elif outcome.answer is not None:
            yield chunk({"content": outcome.answer})
        yield chunk({}, _finish_reason(outcome))
        if include_usage:
            yield _sse({**base, "choices": [], "usage": whole_usage(outcome.usage)})
        yield "data: [DONE]\n\n"
    finally:
        # the client went away (the response task is cancelled): its run goes too. No await
        # here: a cancelled scope would cancel it; the run's own task closes its tree.
        if run.outcome is None and run.task is not None:
            run.task.cancel()
