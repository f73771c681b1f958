"""What runs on a worker for one item: :func:`run_item` (a plain picklable function, so the
same code runs in a local worker process and in a Ray task on another machine).

A failure of one item is that item's result (``stop_reason`` ``"error"`` and the error's type
and message), never the end of the batch.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recursor.batch.items import Item
from recursor.errors import ContextError
from recursor.limits import Limits

if TYPE_CHECKING:
    from recursor.trace.delivery import Sink


@dataclass(frozen=True)
class JobSpec:
    """The batch-wide settings every item runs with (an item's profile and limits override)."""

    model: str | None = None
    sub_model: str | None = None
    max_depth: int = 1
    environment: str = "subprocess"
    #: Limits fields for every item (per-item budgets)
    limits: dict[str, Any] = field(default_factory=dict)
    #: where each item's trace is streamed (on the node that runs it); None: no traces
    trace_dir: str | None = None

    def limits_for(self, item: Item) -> Limits:
        return Limits(**{**self.limits, **item.limits})


def trace_name(item_id: str) -> str:
    """A file name for an id: ids are user text (``../x``, control characters), so only a
    cleaned prefix is kept, and a hash keeps two ids that clean alike apart."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)[:60].lstrip(".") or "item"
    return f"{clean}-{hashlib.sha256(item_id.encode()).hexdigest()[:12]}.jsonl"


def read_context(item: Item) -> Any:
    """The item's context; a path is resolved here, on the node, symlinks included, and must
    stay inside the context root (the checks of ``recursor run``'s ``--context``)."""
    if item.context_path is None:
        return item.context
    from recursor.context_dir import read_directory

    root = os.path.realpath(item.context_root or "/")
    real = os.path.realpath(item.context_path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise ContextError(f"context_path of item {item.id!r} leads outside the context root")
    if os.path.isdir(real):
        return read_directory(real).docs
    if not os.path.isfile(real):
        raise ContextError(f"context_path of item {item.id!r} is not a readable file here")
    try:
        with open(real, "rb"):
            pass
    except OSError as exc:
        raise ContextError(f"cannot read the context of item {item.id!r}: {exc.strerror}") from exc
    return Path(real)


def run_item(spec: JobSpec, item: Item) -> dict[str, Any]:
    """Run one item to its result record (what ``results.jsonl`` holds, less ``node``)."""
    from recursor.rlm import RLM

    start = time.perf_counter()
    trace_path: str | None = None
    try:
        limits = spec.limits_for(item)
        context = read_context(item)
        sinks: list[Sink] = []
        sink = None
        if spec.trace_dir is not None:
            from recursor.trace import JsonlSink

            os.makedirs(spec.trace_dir, exist_ok=True)
            trace_path = os.path.join(spec.trace_dir, trace_name(item.id))
            sink = JsonlSink(trace_path)
            sinks.append(sink)
        try:
            with RLM(
                item.profile.get("model", spec.model),
                item.profile.get("sub_model", spec.sub_model),
                max_depth=int(item.profile.get("max_depth", spec.max_depth)),
                environment=spec.environment,
                limits=limits,
                sinks=sinks,
            ) as rlm:
                result = rlm.completion(item.query, context=context)
        finally:
            if sink is not None:
                sink.close()
    except Exception as exc:  # one item's failure is its result
        return {
            "id": item.id,
            "answer": None,
            "stop_reason": "error",
            "iterations": 0,
            "usage": None,
            "cost_usd": None,
            "wall_s": round(time.perf_counter() - start, 3),
            "trace": trace_path,
            "error": f"{type(exc).__name__}: {exc}",
        }
    total = result.usage.total
    return {
        "id": item.id,
        "answer": result.answer,
        "stop_reason": result.stop_reason,
        "iterations": result.iterations,
        "usage": total.to_dict(),
        "cost_usd": total.cost_usd,
        "wall_s": round(time.perf_counter() - start, 3),
        "trace": trace_path,
        "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}",
    }
