"""Shared helpers of the trace tests: a recorded run tree with sub-calls and child RLMs."""

from __future__ import annotations

from pathlib import Path

import pytest

from recursor import RLM, Limits
from recursor.lm.base import Message
from recursor.rlm import RLMResult
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import JsonlSink

from ..conftest import code

CONTEXT = "".join(f"line {i}: alpha beta gamma\n" for i in range(200))


def child_or_upper(messages: list[Message]) -> str:
    """The model at depth >= 1: a child RLM's two turns, or upper-casing for plain sub-calls."""
    if messages[0]["role"] == "system":
        turn = sum(m["role"] == "assistant" for m in messages)
        return [
            code("print(len(context))\nn = llm_query('up: ' + context[:4])\nprint(n)"),
            "FINAL(child done)",
        ][turn]
    return messages[-1]["content"].split(": ", 1)[1].upper()


def root_script() -> ScriptedLM:
    return ScriptedLM(
        [
            code("print(len(context))", "Probe first."),
            code(
                "parts = llm_query_batched([f'up: {c}' for c in [context[:6], context[6:12]]])\n"
                "print(parts)"
            ),
            code(
                "kids = rlm_query_batched(['count a', 'count b'], "
                "contexts=[context[:30], context[30:60]])\nprint(kids)"
            ),
            code("FINAL(' + '.join(kids))"),
        ],
        name="root-model",
    )


def record(
    path: Path,
    *,
    env: str = "inprocess",
    store_context: bool = True,
    root: ScriptedLM | None = None,
    context: str = CONTEXT,
    limits: Limits | None = None,
) -> RLMResult:
    """Run a depth-2 tree (batched llm_query, two child RLMs) with a streaming JSONL sink."""
    with JsonlSink(path, store_context=store_context) as sink:
        rlm = RLM(
            root or root_script(),
            FunctionLM(child_or_upper, name="sub-model"),
            max_depth=2,
            environment=env,
            limits=limits or Limits(cell_timeout_s=10),
            sinks=[sink],
        )
        return rlm.completion("what is in the context?", context=context)


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[RLMResult, Path]:
    path = tmp_path / "run.jsonl"
    return record(path), path
