"""The matrix runner (concurrency, resume, crashes) and ``recursor bench`` end to end."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recursor.bench import generate
from recursor.bench.methods import Models
from recursor.bench.runner import RECORDS, read_records, run_matrix
from recursor.cli import app
from recursor.lm.base import Message
from recursor.lm.stub_server import StubServer
from recursor.testing import FunctionLM


def reader(messages: list[Message]) -> str:
    found = re.search(r"magic numbers for [\w-]+ is: (\d+)", messages[-1]["content"])
    return found.group(1) if found else "unknown"


def test_concurrent_matrix_then_resume(tmp_path: Path) -> None:
    active, peak = [0], [0]
    lock = threading.Lock()

    def slow_reader(messages: list[Message]) -> str:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            threading.Event().wait(0.05)
            return reader(messages)
        finally:
            with lock:
                active[0] -= 1

    lm = FunctionLM(slow_reader)
    tasks = generate("sniah", n=4, length=3000, seed=0)
    models = Models(root=lm, sub=lm, window_tokens=8192)
    seen: list[int] = []
    records = run_matrix(
        tasks, ["direct", "bm25"], models, tmp_path, concurrency=4,
        on_record=lambda r, done, total: seen.append(done),
    )  # fmt: skip
    assert len(records) == 8 and seen[-1] == 8
    assert [r["task_id"] for r in records[::2]] == [t.id for t in tasks]  # in job order
    assert all(r["score"] == 1.0 and r["error"] is None for r in records)
    assert peak[0] > 1  # jobs ran at once
    calls = lm.calls
    assert len(read_records(tmp_path / RECORDS)) == 8

    # a second run over the same directory reuses every record: no model call
    again = run_matrix(tasks, ["direct", "bm25"], models, tmp_path, concurrency=4)
    assert lm.calls == calls
    assert again == records
    # a different window is a different job
    run_matrix(tasks[:1], ["direct"], Models(root=lm, sub=lm, window_tokens=4096), tmp_path)
    assert lm.calls == calls + 1


def test_a_crash_is_a_record_and_runs_again(tmp_path: Path) -> None:
    state = {"fail": True}

    def flaky(messages: list[Message]) -> str:
        if state["fail"]:
            raise RuntimeError("server melted")
        return reader(messages)

    lm = FunctionLM(flaky)
    tasks = generate("sniah", n=2, length=1000, seed=1)
    models = Models(root=lm, sub=lm)
    first = run_matrix(tasks, ["direct"], models, tmp_path)
    assert [r["stop_reason"] for r in first] == ["crash", "crash"]
    assert all("server melted" in r["error"] and r["score"] == 0.0 for r in first)
    state["fail"] = False
    second = run_matrix(tasks, ["direct"], models, tmp_path)
    assert [r["score"] for r in second] == [1.0, 1.0]


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    lm = FunctionLM(reader)
    tasks = generate("sniah", n=2, length=1000, seed=2)
    run_matrix(tasks, ["direct"], Models(root=lm, sub=lm), tmp_path)
    path = tmp_path / RECORDS
    path.write_text(path.read_text()[:-20])  # a run killed mid-write
    assert len(read_records(path)) == 1
    run_matrix(tasks, ["direct"], Models(root=lm, sub=lm), tmp_path)
    assert lm.calls == 3


@pytest.fixture
def stub(stub_openai: Callable[..., StubServer]) -> StubServer:
    return stub_openai(reader)


def test_bench_cli_end_to_end(stub: StubServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # subprocess: inprocess refuses to start while the stub's OPENAI_API_KEY is set
    args = [
        "bench", "--families", "sniah,codeqa", "--methods", "direct,bm25,oracle",
        "--model", "openai:gpt-5-mini", "--n", "2", "--lengths", "1000,3000",
        "--concurrency", "3", "--environment", "subprocess", "--out", str(out),
    ]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["model"] == "openai:gpt-5-mini"
    assert len(data["records"]) == 2 * 2 * 2 * 3
    cells = {(c["family"], c["length"], c["method"]): c for c in data["cells"]}
    assert len(cells) == 2 * 2 * 3
    # the oracle is exact on both families; the stub reads needles, so direct finds them at 1000
    assert all(
        cells[(f, n, "oracle")]["score_mean"] == 1.0
        for f in ("sniah", "codeqa")
        for n in (1000, 3000)
    )
    assert cells[("sniah", 1000, "direct")]["score_mean"] == 1.0
    assert cells[("sniah", 1000, "direct")]["cost_usd_mean"] is not None  # gpt-5-mini is priced
    md = (out / "results.md").read_text()
    assert "| oracle |" in md and "sniah" in md and "codeqa" in md
    for png in ("score_vs_length.png", "cost_vs_score.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    requests = len(stub.requests)
    assert requests > 0

    # resumed: same matrix, no new requests, same results
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(stub.requests) == requests
    assert json.loads((out / "results.json").read_text())["records"] == data["records"]


def test_bench_cli_rejects_unknown_names(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["bench", "--families", "nope", "--model", "openai:x", "--out", str(tmp_path)]
    )
    assert res.exit_code == 4
    assert "unknown family" in res.output
