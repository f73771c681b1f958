"""The batch input and results files: bad lines, hostile paths, torn tails, budgets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recursor.batch import Item, JobSpec, read_items, run, run_item
from recursor.batch.executor import Outcome
from recursor.batch.job import read_context, trace_name
from recursor.batch.results import ResultsFile
from recursor.errors import ConfigurationError, ContextError


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_lines_are_reported_with_their_numbers(tmp_path: Path) -> None:
    src = _write(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": "a", "query": "q", "context": "x"}),
            "{not json",
            json.dumps({"id": "b"}),
            "",
            json.dumps({"id": "a", "query": "again"}),
            json.dumps({"id": "c", "query": "q", "limits": {"max_iterations": 0}}),
            json.dumps({"id": "d", "query": "q", "surprise": 1}),
            json.dumps(
                {"id": 7, "query": "q", "limits": {"timeout_s": 3}, "profile": {"max_depth": 0}}
            ),
        ],
    )
    items, bad = read_items(src)
    assert [i.id for i in items] == ["a", "7"]
    assert items[1].limits == {"timeout_s": 3} and items[1].profile == {"max_depth": 0}
    assert [b.line for b in bad] == [2, 3, 5, 6, 7]
    assert "not JSON" in bad[0].reason
    assert "query" in bad[1].reason
    assert "repeats" in bad[2].reason
    assert "limits" in bad[3].reason
    assert "surprise" in bad[4].reason


def test_context_path_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "doc.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    src = _write(
        root / "in.jsonl",
        [
            json.dumps({"id": "ok", "query": "q", "context_path": "doc.txt"}),
            json.dumps({"id": "up", "query": "q", "context_path": "../secret.txt"}),
            json.dumps({"id": "abs", "query": "q", "context_path": str(tmp_path / "secret.txt")}),
            json.dumps({"id": "link", "query": "q", "context_path": "link.txt"}),
        ],
    )
    items, bad = read_items(src)
    assert [i.id for i in items] == ["ok", "link"]
    assert [b.line for b in bad] == [2, 3]
    assert all("outside" in b.reason for b in bad)
    assert Path(read_context(items[0])).read_text() == "inside"
    # the symlink's spelling is inside; where it leads is judged on the node that reads it
    with pytest.raises(ContextError, match="outside"):
        read_context(items[1])
    record = run_item(JobSpec(model="openai:none", trace_dir=None), items[1])
    assert record["stop_reason"] == "error" and "ContextError" in record["error"]


def test_trace_names_are_safe_file_names() -> None:
    name = trace_name("../../etc/\x1b]52;c;x\x07passwd")
    assert "/" not in name and "\x1b" not in name and not name.startswith(".")
    assert trace_name("a/b") != trace_name("a_b")


def test_a_torn_last_line_is_cut_and_ids_are_written_once(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"id": "a", "cost_usd": 0.5}) + "\n" + '{"id": "b", "ans')
    results = ResultsFile(tmp_path)
    assert results.done("a") and not results.done("b")
    assert results.spent() == 0.5
    assert results.add({"id": "b", "cost_usd": None})
    assert not results.add({"id": "b", "cost_usd": 1.0})
    assert not results.add({"id": "a"})
    results.close()
    lines = path.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["a", "b"]


def test_two_drivers_never_share_a_directory(tmp_path: Path) -> None:
    first = ResultsFile(tmp_path)
    with pytest.raises(ConfigurationError, match="another batch"):
        ResultsFile(tmp_path)
    first.close()
    ResultsFile(tmp_path).close()


class _Inline:
    """An executor that runs in this process (for driver logic; the real ones are tested in
    test_executors.py)."""

    capacity = 1

    def __init__(self) -> None:
        self.started: list[str] = []

    def map_unordered(self, fn, args):  # type: ignore[no-untyped-def]
        for arg in args:
            self.started.append(arg.id)
            yield Outcome(arg, {"id": arg.id, "stop_reason": "final", "cost_usd": 0.4}, "here")


def test_max_cost_stops_new_items_and_says_how_many_were_left(tmp_path: Path) -> None:
    items = [Item(id=str(i), query="q") for i in range(5)]
    inline = _Inline()
    summary = run(items, inline, out=tmp_path, max_cost=1.0)
    # 0.4 + 0.4 < 1.0 starts a third; 1.2 >= 1.0 starts no fourth
    assert inline.started == ["0", "1", "2"]
    assert summary.finished == 3 and summary.not_started == 2
    assert summary.spent_usd == pytest.approx(1.2)
    # a second run counts the spend already written: nothing more starts
    again = _Inline()
    summary = run(items, again, out=tmp_path, max_cost=1.0)
    assert again.started == [] and summary.skipped == 3 and summary.not_started == 2
    summary = run(items, _Inline(), out=tmp_path, max_cost=5.0)
    assert summary.finished == 2 and summary.skipped == 3
