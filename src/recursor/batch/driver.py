"""The driver of a batch: skip finished ids, feed the executor while the budget lasts, write
each result once as it arrives."""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

from recursor.batch.executor import Executor, Outcome, ProcessExecutor
from recursor.batch.items import Item
from recursor.batch.job import JobSpec, run_item
from recursor.batch.results import ResultsFile, finite_cost

Record = dict[str, Any]


@dataclass
class BatchSummary:
    """How a batch went. ``spent_usd`` covers results written by earlier runs of the same
    directory too: the budget is the whole batch's."""

    total: int = 0
    #: finished by an earlier run of this directory, not run again
    skipped: int = 0
    #: written by this run
    finished: int = 0
    #: items whose task failed outside the item (a worker or node lost for good): not written,
    #: so the next run retries them
    failed: int = 0
    #: items never started because ``max_cost`` was spent
    not_started: int = 0
    spent_usd: float = 0.0
    elapsed_s: float = 0.0
    stop_reasons: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)


#: ``on_result(record_or_None, outcome, summary)`` after each outcome (progress display)
OnResult = Callable[[Record | None, Outcome[Item, Record], BatchSummary], None]


class RunOptions(TypedDict, total=False):
    """How :func:`run` runs its items."""

    #: the models, depth, environment and per-item limits (default: JobSpec's defaults,
    #: traces under ``out/traces``)
    spec: JobSpec
    #: USD for the whole batch: no new item starts once the results add up to it
    max_cost: float | None
    on_result: OnResult | None


def run(
    items: Iterable[Item],
    executor: Executor | None = None,
    *,
    out: str | Path,
    **options: Unpack[RunOptions],
) -> BatchSummary:
    """Run every item not yet in ``out/results.jsonl``; append each result as it ends.

    ``max_cost`` (USD, whole batch): once the results' total reaches it no new item starts
    (those running finish); the summary says how many were left.
    """
    executor = executor or ProcessExecutor(1)
    max_cost = options.get("max_cost")
    on_result = options.get("on_result")
    spec = options.get("spec") or JobSpec(trace_dir=str(Path(out).resolve() / "traces"))
    results = ResultsFile(out)
    summary = BatchSummary(spent_usd=results.spent())
    start = time.perf_counter()
    todo: list[Item] = []
    for item in items:
        summary.total += 1
        if results.done(item.id):
            summary.skipped += 1
        else:
            todo.append(item)

    def feed() -> Iterator[Item]:
        for i, item in enumerate(todo):
            if max_cost is not None and summary.spent_usd >= max_cost:
                summary.not_started = len(todo) - i
                return
            yield item

    try:
        for outcome in executor.map_unordered(functools.partial(run_item, spec), feed()):
            record: Record | None = None
            if outcome.value is None:
                summary.failed += 1
                summary.errors.append((outcome.arg.id, outcome.error or "unknown"))
            else:
                record = {**outcome.value, "node": outcome.node}
                if results.add(record):
                    summary.finished += 1
                    summary.spent_usd += finite_cost(record)
                    summary.stop_reasons[str(record.get("stop_reason"))] += 1
            summary.elapsed_s = time.perf_counter() - start
            if on_result is not None:
                on_result(record, outcome, summary)
    finally:
        results.close()
        summary.elapsed_s = time.perf_counter() - start
    return summary
