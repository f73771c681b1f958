"""Supervised fine-tuning data from traces: the root controller's conversations, as chat records.

One record per run::

    {"messages": [{"role": "system", ...}, {"role": "user", "content": query + metadata},
                  {"role": "assistant", "content": reply with ```repl code```},
                  {"role": "user", "content": the observation of its cells}, ...],
     "meta": {"run_id": ..., "answer": ..., "stop_reason": ..., ...}}

The conversation is rebuilt from the ``ModelCalled`` deltas, so it is exactly what the model
was sent and what it answered (the observation turns included). That is the chat format
trainers such as TRL's ``SFTTrainer`` read; train on the assistant turns only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recursor.trace import Trace
from recursor.trace.runs import RunRecord, group_runs


@dataclass(frozen=True, slots=True)
class SFTOptions:
    #: keep only runs that ended with a final answer
    only_final: bool = False
    #: keep at most this many assistant turns per record (None: all)
    max_turns: int | None = None
    #: runs down to this depth (0: root runs only; 1: also their child RLMs; ...)
    depth: int = 0


def _meta(run: RunRecord, source: str, turns: int) -> dict[str, Any]:
    done = run.finished
    usage: dict[str, float] = {"calls": 0, "input_tokens": 0, "output_tokens": 0}
    for call in run.calls[:turns]:
        for key in usage:
            usage[key] += call.usage.get(key) or 0
    return {
        "run_id": run.run_id,
        "parent_id": run.parent_id,
        "depth": run.depth,
        "query": run.started.query,
        "answer": done.answer if done else None,
        "stop_reason": done.stop_reason if done else "incomplete",
        "iterations": len(run.calls),
        "turns": turns,
        "truncated": turns < len(run.calls),
        "model": run.calls[0].model if run.calls else None,
        "prompt_version": run.started.config.get("prompt_version"),
        "usage": usage,
        "trace": source,
    }


def records(path: str | Path, options: SFTOptions | None = None) -> Iterator[dict[str, Any]]:
    """The SFT records of one trace file, runs in start order."""
    opts = options or SFTOptions()
    for run in group_runs(Trace.load(path)).values():
        if run.depth > opts.depth or not run.calls:
            continue
        stop = run.finished.stop_reason if run.finished else None
        if opts.only_final and stop != "final":
            continue
        messages = run.conversation(opts.max_turns)
        turns = sum(1 for m in messages if m["role"] == "assistant")
        yield {"messages": messages, "meta": _meta(run, str(path), turns)}


def export_sft(
    paths: Iterable[str | Path], out: str | Path, options: SFTOptions | None = None
) -> int:
    """Write the records of every trace to ``out`` (JSONL); how many were written."""
    n = 0
    with Path(out).open("w", encoding="utf-8", errors="backslashreplace") as f:
        for path in paths:
            for record in records(path, options):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
    return n
