"""Configuration: TOML, env overrides, and bad configs failing at start with file, key, reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recursor.cli import app
from recursor.errors import ConfigurationError
from recursor.serve.config import RLMProfile, hash_key, load_config

GOOD = """
[server]
port = 9001

[[keys]]
name = "alice"
key = "sk-alice"
daily_usd = 1.5

[profiles.rlm]
root = "openai:gpt-4o-mini"
sub = "openai:gpt-4o-mini"
max_depth = 2
limits = { max_iterations = 5, timeout_s = 30 }

[profiles.mini]
model = "openai:gpt-4o-mini"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recursor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_and_env_overrides(tmp_path: Path) -> None:
    env = {"RECURSOR_SERVER_PORT": "9100", "RECURSOR_PROFILE__rlm__max_depth": "3"}
    cfg = load_config(write(tmp_path, GOOD), environ=env)
    assert cfg.server.port == 9100
    rlm = cfg.profiles["rlm"]
    assert isinstance(rlm, RLMProfile) and rlm.max_depth == 3 and rlm.limits.max_iterations == 5
    assert cfg.profiles["mini"].kind == "model"
    # the key is kept hashed only
    assert cfg.keys[0].sha256 == hash_key("sk-alice") and cfg.keys[0].key is None
    assert "sk-alice" not in repr(cfg) and "sk-alice" not in cfg.model_dump_json()


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            GOOD.replace("max_depth = 2", "max_depth = -1"),
            "profiles.rlm.max_depth",
            "greater than or equal to 0",
        ),
        (
            GOOD.replace("max_iterations = 5", "max_iterations = -5"),
            "profiles.rlm.limits.max_iterations",
            "greater than or equal to 1",
        ),
        (GOOD.replace("port = 9001", "port = 'x'"), "server.port", "integer"),
        (GOOD.replace("port = 9001", "prot = 1"), "server.prot", "Extra inputs"),
        (
            GOOD.replace("max_depth = 2", 'environment = "inprocess"'),
            "profiles.rlm",
            "trusted = true",
        ),
        (
            GOOD.replace('model = "openai', 'mdl = "openai'),
            "(top level)",
            "profiles.mini: needs root",
        ),
        (
            GOOD.replace("port = 9001", 'host = "0.0.0.0"')
            .replace('key = "sk-alice"', "")
            .replace('[[keys]]\nname = "alice"\n\ndaily_usd = 1.5', ""),
            "(top level)",
            "not loopback",
        ),
    ],
)
def test_bad_config_names_file_key_reason(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert f"{path}: {where}" in message and reason in message


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such config file"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_config(write(tmp_path, "[server\n"), environ={})


def test_cli_reports_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("max_depth = 2", "max_depth = -1"))
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 4
    assert "profiles.rlm.max_depth" in result.output
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 4 and "--root" in result.output
    # no keys: a public bind is refused
    result = CliRunner().invoke(app, ["serve", "--root", "openai:x", "--host", "0.0.0.0"])
    assert result.exit_code == 4 and "not loopback" in result.output
    result = CliRunner().invoke(app, ["serve", "--root", "openai:x", "-e", "inprocess"])
    assert result.exit_code == 4 and "trusted" in result.output


def test_command_line_profiles() -> None:
    from recursor.cli_serve import build_config

    cfg = build_config(None, "openai:big", "openai:small", 2, "subprocess", False, {"port": 1})
    assert set(cfg.profiles) == {"rlm", "openai:big"}
    assert cfg.profiles["rlm"].sub == "openai:small" and cfg.profiles["rlm"].max_depth == 2
    assert cfg.profiles["openai:big"].model == "openai:big"
    assert cfg.server.port == 1


def test_request_limits_only_tighten() -> None:
    from recursor.limits import Limits
    from recursor.serve.config import LimitsConfig

    profile = LimitsConfig(max_iterations=5, max_cost_usd=1.0).apply(Limits())
    asked = LimitsConfig(max_iterations=50, max_cost_usd=0.5, max_tokens=100)
    got = asked.tighten(profile)
    assert got.max_iterations == 5  # not raised past the profile's
    assert got.max_cost_usd == 0.5 and got.max_tokens == 100  # lowered / set
