"""The recursor CLI, end to end, against a stub OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recursor import RLM
from recursor.cli import Exit, app, load_context
from recursor.lm.stub_server import StubServer

runner = CliRunner()


def root_then_sub(messages: list[dict[str, str]]) -> str:
    """One server plays both models: the root (it has a system prompt) and the sub-model."""
    if messages[0]["role"] == "system":
        if len(messages) == 2:
            return "```repl\nn = len(context)\nsays = llm_query('echo ' + str(n))\n```"
        return "FINAL_VAR(says)"
    return messages[-1]["content"].removeprefix("echo ")


@pytest.fixture
def openai_env(stub_openai: Callable[..., StubServer]) -> StubServer:
    return stub_openai(root_then_sub)


def test_run_file_json(openai_env: StubServer, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("x" * 1234)
    trace = tmp_path / "t.jsonl"
    res = runner.invoke(
        app,
        [
            "run",
            "how long?",
            "-c",
            str(ctx),
            "-m",
            "openai:gpt-4o-mini",
            "--json",
            "--trace",
            str(trace),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert data["answer"] == "1234" and data["stop_reason"] == "final"
    assert data["usage"]["total"]["calls"] == 3
    assert data["usage"]["total"]["cost_usd"] is not None  # gpt-4o-mini has a known price
    assert trace.exists() and "run_started" in trace.read_text()
    assert "sk-test-not-a-secret" not in trace.read_text()
    assert "x" * 1234 not in trace.read_text()  # the context only with --store-context
    stored = tmp_path / "stored.jsonl"
    res = runner.invoke(
        app,
        [
            *("run", "how long?", "-c", str(ctx), "-m", "openai:gpt-4o-mini", "-q"),
            *("--trace", str(stored), "--store-context"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert stored.read_text().count("x" * 1234) == 1


def test_run_stdin_and_dir(openai_env: StubServer, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["run", "q", "-c", "-", "-m", "openai:gpt-4o-mini", "-q"], input="abcdef"
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "6"
    (tmp_path / "a.py").write_text("print(1)\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("hello")
    (tmp_path / "bin.dat").write_bytes(b"\0\1\2")
    assert load_context(str(tmp_path)) == {"a.py": "print(1)\n", "sub/b.txt": "hello"}


def test_exit_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("c")
    res = runner.invoke(app, ["run", "q", "-c", str(tmp_path / "missing.txt"), "-m", "openai:x"])
    assert res.exit_code == Exit.CONTEXT
    res = runner.invoke(app, ["run", "q", "-c", str(ctx), "-m", "nosuch:model"])
    assert res.exit_code == Exit.MODEL
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    res = runner.invoke(app, ["run", "q", "-c", str(ctx), "-m", "openai:gpt-4o-mini", "-q"])
    assert res.exit_code == Exit.AUTH, res.output
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    res = runner.invoke(app, ["run", "q", "-c", str(ctx), "-m", "openai:gpt-4o-mini", "-q"])
    assert res.exit_code == Exit.UNREACHABLE, res.output


def test_models_lists_providers() -> None:
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    for name in ("local:qwen2.5-coder-1.5b", "openai:<model>", "anthropic:<model>"):
        assert name in res.stdout


def test_install_hints_keep_their_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Rich markup must not eat "[openai]": the hint is the one thing a user needs to read."""
    from recursor.lm import registry

    # openai's backend missing: its module cannot be imported
    monkeypatch.setitem(registry.PROVIDERS, "openai", ("recursor_no_such_module", "openai"))
    wide = {"COLUMNS": "240"}  # rich would otherwise wrap the table's cells
    res = runner.invoke(app, ["models"], env=wide)
    assert res.exit_code == 0
    assert 'not installed (pip install "recursor[openai]")' in res.stdout
    ctx = tmp_path / "c.txt"
    ctx.write_text("c")
    res = runner.invoke(app, ["run", "q", "-c", str(ctx), "-m", "openai:gpt-x", "-q"], env=wide)
    assert res.exit_code == Exit.MODEL
    assert 'pip install "recursor[openai]"' in res.stderr


def test_live_view_summary_prints_errors_as_text() -> None:
    import io

    from rich.console import Console

    from recursor.cli_view import LiveView
    from recursor.errors import ConfigurationError
    from recursor.testing import ScriptedLM

    buf = io.StringIO()
    view = LiveView(Console(file=buf, width=200), enabled=False)
    result = RLM(ScriptedLM(["FINAL(x)"]), environment="inprocess").completion("q")
    result.answer, result.error = None, ConfigurationError('pip install "recursor[openai]" [b]x')
    view.summary(result)
    assert 'pip install "recursor[openai]" [b]x' in buf.getvalue()
