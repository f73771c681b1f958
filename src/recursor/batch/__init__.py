"""Batches: many (query, context) items through RLMs, locally or on a Ray cluster.

    from recursor.batch import ProcessExecutor, RayExecutor, read_items, run

    items, bad = read_items("questions.jsonl")
    summary = run(items, executor=ProcessExecutor(4), out="out/")   # or RayExecutor("auto")

Results go to ``out/results.jsonl`` as each item ends; a second run over the same directory
skips the ids already there. ``recursor batch`` is the command-line face of :func:`run`.
"""

from __future__ import annotations

from recursor.batch.driver import BatchSummary, run
from recursor.batch.executor import Executor, Outcome, ProcessExecutor
from recursor.batch.items import BadLine, Item, read_items
from recursor.batch.job import JobSpec, run_item
from recursor.batch.ray_executor import RayExecutor

__all__ = [
    "BadLine",
    "BatchSummary",
    "Executor",
    "Item",
    "JobSpec",
    "Outcome",
    "ProcessExecutor",
    "RayExecutor",
    "read_items",
    "run",
    "run_item",
]
