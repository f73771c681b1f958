"""The inprocess environment runs model code with the host's authority, so it refuses to start
while a provider key is in the process environment, unless trust is said on the object."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recursor import RLM
from recursor.cli import Exit, app
from recursor.errors import ConfigurationError
from recursor.lm.stub_server import StubServer
from recursor.sandbox.inprocess import InProcessEnvironment, keys_in_environment
from recursor.testing import ScriptedLM

from ..conftest import code

VALUE = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    "name",
    ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "HF_TOKEN", "aws_secret_access_key"],
)
def test_refuses_to_start_with_a_key_set(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, VALUE)
    assert name in keys_in_environment()
    with pytest.raises(ConfigurationError) as info:
        InProcessEnvironment()
    message = str(info.value)
    assert name in message and VALUE not in message  # the name, never the value
    assert "environment=InProcessEnvironment(trusted=True)" in message  # how to override
    assert "subprocess" in message  # and what to use instead
    with pytest.raises(ConfigurationError, match="will not start"):
        RLM(ScriptedLM(["FINAL(x)"]), environment="inprocess").completion("q", "c")


def test_trusted_runs_and_model_code_sees_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", VALUE)
    root = ScriptedLM([code("import os\nFINAL(os.environ['OPENAI_API_KEY'][-4:])")])
    rlm = RLM(root, environment=InProcessEnvironment(trusted=True))
    assert rlm.completion("q", "c").answer == VALUE[-4:]  # what trusted=True lets it do


def test_a_key_set_after_the_environment_was_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    env = InProcessEnvironment()
    rlm = RLM(ScriptedLM(["FINAL(x)"]), environment=env)
    monkeypatch.setenv("OPENAI_API_KEY", VALUE)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        rlm.completion("q", "c")


def test_unrelated_or_empty_variables_do_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in keys_in_environment():
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("MAX_TOKENS_HINT", "5")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    assert keys_in_environment() == []
    assert RLM(ScriptedLM(["FINAL(x)"]), environment="inprocess").completion("q").answer == "x"


def test_cli_says_why_and_how(stub_openai: Callable[..., StubServer], tmp_path: Path) -> None:
    stub_openai(lambda messages: "FINAL(x)")  # sets OPENAI_API_KEY, as a real user has it
    ctx = tmp_path / "c.txt"
    ctx.write_text("c")
    res = CliRunner().invoke(
        app,
        ["run", "q", "-c", str(ctx), "-m", "openai:gpt-4o-mini", "-e", "inprocess", "-q"],
        env={"COLUMNS": "400"},
    )
    assert res.exit_code == Exit.MODEL, res.output
    assert "OPENAI_API_KEY" in res.stderr and "trusted=True" in res.stderr
