"""``rlms`` as a bench method, against the stub server and through the loopback bridge, and the
matrix on a batch executor (``recursor bench --ray`` runs it on RayExecutor the same way)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from recursor.batch import ProcessExecutor
from recursor.bench import generate
from recursor.bench.endpoint import Endpoint
from recursor.bench.methods import Models
from recursor.bench.runner import RECORDS, read_records, run_matrix
from recursor.lm.registry import resolve_lm
from recursor.lm.stub_server import StubError, StubServer
from recursor.testing import FunctionLM

pytest.importorskip("rlm")

#: what a model driving rlms replies: a cell that finds the needle in rlms's ``context``
#: variable and ends through rlms's answer dict
FIND_NEEDLE = (
    "```repl\nimport re\n"
    "m = re.search(r'magic numbers for [\\w-]+ is: (\\d+)', str(context))\n"
    "answer['content'] = m.group(1) if m else 'none'\nanswer['ready'] = True\n```"
)


def _reader(text: str) -> str:
    import re

    found = re.search(r"magic numbers for [\w-]+ is: (\d+)", text)
    return found.group(1) if found else "unknown"


def _reply(chat: list[dict[str, str]]) -> str:
    """rlms's root gets the cell; our direct method gets the needle read from its prompt."""
    text = "\n".join(m["content"] for m in chat)
    return FIND_NEEDLE if "```repl" in text else _reader(text)


def test_rlms_runs_against_an_openai_compatible_endpoint(
    stub_openai: Callable[..., StubServer], tmp_path: Path
) -> None:
    server = stub_openai(_reply)
    root = resolve_lm("openai:gpt-4o-mini")
    models = Models(root, root, endpoint=Endpoint(server.base_url, "gpt-4o-mini", "k"))
    records = run_matrix(generate("sniah", 2, 1000, 0), ["rlms", "direct"], models, tmp_path)
    rlms = [r for r in records if r["method"] == "rlms"]
    assert len(rlms) == 2
    for r in rlms:
        assert r["score"] == 1.0, r
        assert r["stop_reason"] == "answered" and r["error"] is None
        assert r["calls"] >= 1 and r["input_tokens"] > 0 and r["cost_usd"] > 0
        assert r["latency_s"] > 0
    bodies = [req.body for req in server.requests]
    assert any(b["model"] == "gpt-4o-mini" and "```repl" in str(b) for b in bodies)
    assert all(r["score"] == 1.0 for r in records if r["method"] == "direct")


def test_rlms_reaches_any_lm_through_the_bridge(tmp_path: Path) -> None:
    seen: list[int] = []

    def root_fn(messages: list[dict[str, str]]) -> str:
        seen.append(1)
        return _reply(messages)  # type: ignore[arg-type]

    root = FunctionLM(root_fn, name="local:fake")  # type: ignore[arg-type]
    records = run_matrix(generate("sniah", 1, 1000, 0), ["rlms"], Models(root, root), tmp_path)
    (r,) = records
    assert r["score"] == 1.0, r
    assert r["calls"] == len(seen) >= 1  # counted at the bridge: every call rlms made
    assert r["input_tokens"] > 0


def test_rlms_failures_are_its_own(tmp_path: Path) -> None:
    def refuse(chat: list[dict[str, str]]) -> str:
        raise StubError(500, "down")

    with StubServer(refuse, record=False) as broken:
        root = FunctionLM(lambda m: _reader(m[-1]["content"]), name="fake")  # type: ignore[arg-type]
        models = Models(root, root, endpoint=Endpoint(broken.base_url, "m", "k"))
        records = run_matrix(generate("sniah", 1, 1000, 0), ["rlms", "direct"], models, tmp_path)
    by_method = {r["method"]: r for r in records}
    assert by_method["direct"]["score"] == 1.0 and by_method["direct"]["error"] is None
    failed = by_method["rlms"]
    assert failed["score"] == 0.0 and failed["error"]
    assert failed["stop_reason"] in {"error", "crash"}


def test_the_matrix_runs_on_a_batch_executor_and_resumes(
    stub_openai: Callable[..., StubServer], tmp_path: Path
) -> None:
    server = stub_openai(_reply)
    root = resolve_lm("openai:gpt-4o-mini")
    models = Models(root, root)
    tasks = generate("sniah", 2, 1000, 0)
    records = run_matrix(tasks, ["direct", "bm25"], models, tmp_path, executor=ProcessExecutor(2))
    assert len(records) == 4 and all(r["score"] == 1.0 for r in records)
    assert len(read_records(tmp_path / RECORDS)) == 4
    calls = len(server.requests)
    again = run_matrix(tasks, ["direct", "bm25"], models, tmp_path, executor=ProcessExecutor(2))
    assert again == records and len(server.requests) == calls


def test_rlms_sends_its_llm_query_to_the_sub_model(tmp_path: Path) -> None:
    asks = "```repl\nanswer['content'] = llm_query('which number?')\nanswer['ready'] = True\n```"
    sub_calls: list[str] = []

    def sub_fn(messages: list[dict[str, str]]) -> str:
        sub_calls.append(messages[-1]["content"])
        return "42"

    root = FunctionLM(lambda m: asks, name="root-model")  # type: ignore[arg-type]
    sub = FunctionLM(sub_fn, name="sub-model")  # type: ignore[arg-type]
    (r,) = run_matrix(generate("sniah", 1, 1000, 0), ["rlms"], Models(root, sub), tmp_path)
    assert r["answer"] == "42" and sub_calls == ["which number?"]
    assert r["calls"] == 2  # one root turn, one sub-call, both counted at the bridges
