"""``recursor replay``: recorded replies, real cells, no model calls, differences reported."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recursor import Limits
from recursor.apps.replay import replay
from recursor.cli import app
from recursor.rlm import RLMResult
from recursor.testing import ScriptedLM

from ..conftest import code
from .conftest import CONTEXT, record

runner = CliRunner()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: a replay must not reach a model."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the replay opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("env", ["inprocess", "subprocess"])
def test_deterministic_tree_replays_exactly(env: str, tmp_path: Path, no_network: None) -> None:
    path = tmp_path / "run.jsonl"
    result = record(path, env=env)
    [report] = replay(path)
    assert report.ok, report.to_dict()
    assert report.runs == 3  # the root and both child RLMs were replayed and compared
    assert report.cells == 6
    assert report.replayed_answer == result.answer == "child done + child done"
    # every model call of the recording was answered from the trace
    assert report.answered_from_trace == result.usage.total.calls


def test_nondeterministic_cell_is_reported(tmp_path: Path) -> None:
    root = ScriptedLM(
        [
            code("print('stable')"),
            code("import uuid\nprint(uuid.uuid4().hex)"),
            code("FINAL('done')"),
        ]
    )
    path = tmp_path / "run.jsonl"
    record(path, root=root)
    [report] = replay(path)
    assert not report.ok
    assert [(d.iteration, d.index, d.field) for d in report.diffs] == [(2, 0, "stdout")]
    diff = report.diffs[0]
    assert "uuid" in diff.code and diff.recorded != diff.replayed
    assert report.replayed_answer == "done"

    res = runner.invoke(app, ["replay", str(path)])
    assert res.exit_code == 1, res.output
    assert "iteration 2" in res.output and "stdout differs" in res.output
    assert "--- recorded" in res.output and "+++ replayed" in res.output  # a unified diff
    res = runner.invoke(app, ["replay", str(path), "--json"])
    data = json.loads(res.stdout)
    assert data[0]["ok"] is False and data[0]["diffs"][0]["field"] == "stdout"


def test_cli_replay_exit_zero_when_identical(recorded: tuple[RLMResult, Path]) -> None:
    _, path = recorded
    res = runner.invoke(app, ["replay", str(path)])
    assert res.exit_code == 0, res.output
    assert "0 differ" in res.output and "same" in res.output


def test_context_needed_when_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    record(path, store_context=False)
    res = runner.invoke(app, ["replay", str(path)])
    assert res.exit_code == 3
    assert "--context" in res.output
    ctx = tmp_path / "ctx.txt"
    ctx.write_text(CONTEXT)
    res = runner.invoke(app, ["replay", str(path), "--context", str(ctx)])
    assert res.exit_code == 0, res.output
    # a different context: the cells' outputs differ and say so
    ctx.write_text(CONTEXT[:-50])
    res = runner.invoke(app, ["replay", str(path), "-c", str(ctx)])
    assert res.exit_code == 1 and "stdout differs" in res.output


def test_replay_past_the_recording_is_an_error(tmp_path: Path) -> None:
    # The recording hit max_iterations; the replay reuses the recorded limits, so it stops
    # where the recording did.
    root = ScriptedLM([code("print(1)"), code("print(2)"), code("print(3)")])
    path = tmp_path / "run.jsonl"
    result = record(path, root=root, limits=Limits(max_iterations=2))
    assert result.stop_reason == "max_iterations"
    [report] = replay(path)
    assert report.ok and report.replayed_stop == "max_iterations"

    # A trace cut short (a crash): the replay asks for a reply that was never recorded.
    text = path.read_text().splitlines()
    cut = [line for line in text if '"type":"run_finished"' not in line]
    last_call = max(i for i, line in enumerate(cut) if '"type":"model_called"' in line)
    (tmp_path / "cut.jsonl").write_text("\n".join(cut[:last_call]) + "\n")
    [report] = replay(tmp_path / "cut.jsonl")
    assert not report.ok
    assert report.error is not None and "recorded 2 model replies" in report.error


def test_unknown_run_is_a_usage_error(recorded: tuple[RLMResult, Path]) -> None:
    _, path = recorded
    res = runner.invoke(app, ["replay", str(path), "--run", "nope"])
    assert res.exit_code == 2 and "no run 'nope'" in res.output
    res = runner.invoke(app, ["replay", str(path), "--environment", "nope"])
    assert res.exit_code == 4 and "unknown environment" in res.output


def test_replay_models_take_the_recorded_window_and_style(tmp_path: Path) -> None:
    from recursor import RLM
    from recursor.apps.replay import _recorded_profile
    from recursor.lm import LMProfile
    from recursor.testing import FunctionLM
    from recursor.trace import JsonlSink, RunStarted, Trace

    path = tmp_path / "run.jsonl"
    sub = FunctionLM(lambda chat: "ok", name="small", profile=LMProfile(context_window=100))
    root = ScriptedLM([code("print(llm_query_batched(['x' * 1000, 'y']))"), "FINAL(done)"])
    with JsonlSink(path, store_context=True) as sink:
        RLM(root, sub, environment="inprocess", sinks=[sink], prompt_style="compact").completion(
            "q", context="c"
        )
    [started] = [e for e in Trace.load(path) if isinstance(e, RunStarted)]
    assert started.config["sub_context_window"] == 100
    sub_profile = _recorded_profile(started.config, "sub")
    root_profile = _recorded_profile(started.config, "root")
    assert sub_profile is not None and sub_profile.context_window == 100
    assert root_profile is not None and root_profile.prompt_style == "compact"
    [report] = replay(path)
    assert report.ok, report.to_dict()
