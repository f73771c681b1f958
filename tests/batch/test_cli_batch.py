"""``recursor batch`` end to end on the stub model: bad lines, summary, resume, --max-cost."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recursor.cli import app
from recursor.lm.stub_server import StubServer
from tests.batch.conftest import PRICED, read_results


def _input(tmp_path: Path) -> Path:
    (tmp_path / "doc.txt").write_text("a document " * 50)
    lines = [
        json.dumps({"id": "a", "query": "question Qa", "context": "x " * 100}),
        '{"id": "torn"',
        json.dumps({"id": "b", "query": "question Qb", "context_path": "doc.txt"}),
        json.dumps({"id": "c", "query": "question Qc", "context_path": "/etc/passwd"}),
        json.dumps({"id": "\x1b[31mred", "query": "question Qd"}),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    return src


def test_batch_runs_reports_and_resumes(stub: StubServer, tmp_path: Path) -> None:
    src, out = _input(tmp_path), tmp_path / "out"
    args = ["batch", str(src), "--out", str(out), "--model", PRICED, "--max-depth", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "skipped line 2" in result.output and "skipped line 4" in result.output
    assert "outside the context root" in result.output
    assert "\x1b[31m" not in result.output  # the id is shown escaped, not obeyed
    assert "3 items, 3 run now (final 3)" in result.output
    records = {r["id"]: r for r in read_results(out)}
    assert sorted(records) == sorted(["a", "b", "\x1b[31mred"])
    assert records["b"]["answer"] == "ans-Qb"
    assert records["a"]["cost_usd"] > 0 and records["a"]["usage"]["calls"] == 1
    assert Path(records["a"]["trace"]).is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 run now" in again.output and "3 already done" in again.output


def test_max_cost_leaves_items_unstarted_and_says_so(stub: StubServer, tmp_path: Path) -> None:
    src, out = _input(tmp_path), tmp_path / "out"
    args = ["batch", str(src), "--out", str(out), "--model", PRICED, "--max-depth", "0"]
    result = CliRunner().invoke(app, [*args, "--max-cost", "0.0000001"])
    assert result.exit_code == 1
    assert "2 items were not started" in result.output
    assert len(read_results(out)) == 1
