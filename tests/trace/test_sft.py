"""``recursor export-sft``: chat records rebuilt from the message deltas."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recursor import Limits
from recursor.apps.sft import SFTOptions, records
from recursor.cli import app
from recursor.rlm import RLMResult
from recursor.testing import ScriptedLM

from ..conftest import code
from .conftest import record, root_script

runner = CliRunner()


def test_root_record_is_the_exact_conversation(tmp_path: Path) -> None:
    root = root_script()
    path = tmp_path / "run.jsonl"
    result = record(path, root=root)
    [rec] = list(records(path))
    messages = rec["messages"]
    roles = [m["role"] for m in messages]
    assert roles[:3] == ["system", "user", "assistant"]
    assert roles[2:] == ["assistant", "user"] * 3 + ["assistant"]
    # exactly what the model was last sent, then its last reply: nothing lost or reordered
    assert root.calls[-1] == messages[:-1]
    assert [m["content"] for m in messages if m["role"] == "assistant"] == root._responses
    assert "[cell 1]" in messages[3]["content"]  # observations are the user turns
    meta = rec["meta"]
    assert meta["run_id"] == result.run_id and meta["depth"] == 0
    assert meta["answer"] == "child done + child done" and meta["stop_reason"] == "final"
    assert meta["turns"] == 4 and meta["truncated"] is False
    assert meta["usage"]["calls"] == 4


def test_depth_only_final_and_max_turns(tmp_path: Path, recorded: tuple[RLMResult, Path]) -> None:
    _, good = recorded
    bad = tmp_path / "bad.jsonl"
    record(bad, root=ScriptedLM([code("print(1)")] * 3), limits=Limits(max_iterations=2))
    assert len(list(records(good, SFTOptions(depth=1)))) == 3  # the root and two children
    children = [r for r in records(good, SFTOptions(depth=1)) if r["meta"]["depth"] == 1]
    assert all(r["meta"]["parent_id"] for r in children)
    assert [r["meta"]["stop_reason"] for r in records(bad)] == ["max_iterations"]
    assert list(records(bad, SFTOptions(only_final=True))) == []
    [short] = list(records(good, SFTOptions(max_turns=2)))
    assert [m["role"] for m in short["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert short["meta"]["truncated"] is True

    out = tmp_path / "data.jsonl"
    res = runner.invoke(
        app, ["export-sft", str(good), str(bad), "--out", str(out), "--only-final", "--depth", "1"]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and "wrote 3 records" in res.output
    assert {r["meta"]["trace"] for r in rows} == {str(good)}
    res = runner.invoke(app, ["export-sft", str(good), "--out", str(out), "--max-turns", "1"])
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
