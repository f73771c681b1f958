"""One line of progress per event, for ``delta.reasoning_content`` in streamed chat replies.

Lines carry counts and names, not model text: the reply a model wrote and the code it ran are
in the run's events (``/v1/runs/{id}/events``); a chat UI shows these lines as "thinking".
"""

from __future__ import annotations

from typing import Any


def _depth(event: dict[str, Any]) -> str:
    depth = event.get("depth")
    return f"[depth {depth}] " if isinstance(depth, int) and depth > 0 else ""


def progress_line(event: dict[str, Any]) -> str | None:  # noqa: PLR0911 - one return a kind
    """The line for one event (as JSON data), or None for events not worth a line."""
    kind = event.get("type")
    if kind == "run_started":
        if event.get("depth", 0) == 0:
            meta = event.get("context_meta") or {}
            kind_of = meta.get("type", "context")
            return f"run started over a {kind_of} of {meta.get('total_chars', 0):,} chars"
        return f"{_depth(event)}child run started"
    if kind == "model_called":
        usage = event.get("usage") or {}
        tokens = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        return (
            f"iteration {event.get('iteration')}: {event.get('model')} replied "
            f"({len(str(event.get('reply', ''))):,} chars, {tokens:,} tokens, "
            f"{float(event.get('latency_s', 0)):.2f}s)"
        )
    if kind == "cell_ran":
        status = "error" if event.get("error") else "timed out" if event.get("timed_out") else "ok"
        return (
            f"iteration {event.get('iteration')} cell {event.get('index')}: {status}, "
            f"{len(str(event.get('stdout', ''))):,} chars printed, "
            f"{float(event.get('duration_s', 0)):.2f}s"
        )
    if kind == "subcall":
        state = "error" if event.get("error") else "cached" if event.get("cached") else "ok"
        return (
            f"{_depth(event)}{event.get('kind')} #{event.get('index')} -> {event.get('model')}: "
            f"{event.get('prompt_chars', 0):,} chars in, {event.get('reply_chars', 0):,} out, "
            f"{state}"
        )
    if kind == "limit_hit":
        return f"limit {event.get('limit')}: {event.get('message')}"
    return None
