"""API keys never reach a trace file: config, printed environment, model objects, URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recursor import RLM
from recursor.apps.viewer import render_html
from recursor.lm.base import Completion, Message
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import JsonlSink, RunStarted, Trace
from recursor.trace.redact import MASK, redact_config, register_secrets_of, scrub

from ..conftest import code

ENV_KEY = "sk-env-0123456789-SECRET"
ATTR_KEY = "sk-attr-9876543210-SECRET"
HIDDEN_KEY = "sk-hidden-5555555555-SECRET"


class KeyedLM(FunctionLM):
    """A model object carrying its key the way SDK wrappers do."""

    def __init__(self, replies: list[str]) -> None:
        self._replies = iter(replies)
        super().__init__(lambda m: next(self._replies), name="keyed")
        self.api_key = ATTR_KEY


class _Secret:
    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value


class _Endpoint:
    api_key = _Secret(HIDDEN_KEY)


class EndpointLM(ScriptedLM):
    """Like recursor.lm's remote backends: the key inside ``endpoint.api_key``, a Secret."""

    def __init__(self) -> None:
        super().__init__(["unused"], name="endpoint-lm")
        self.endpoint = _Endpoint()

    def complete(self, messages: list[Message]) -> Completion:
        raise AssertionError("never called")


def test_no_key_anywhere_in_the_trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    # inprocess shares the host environment, so model code can print the key: worst case
    root = KeyedLM(
        [
            code(
                "import os\nprint(os.environ['OPENAI_API_KEY'])\n"
                f"print('attr', {ATTR_KEY!r}, 'hidden', {HIDDEN_KEY!r})\n"
                "print('https://user:hunter2pass@example.test/v1')"
            ),
            f"FINAL(the key is {ENV_KEY})",
        ]
    )
    path = tmp_path / "run.jsonl"
    with JsonlSink(path, store_context=True) as sink:
        result = RLM(
            root, environment="inprocess", sinks=[sink], models={"other": EndpointLM()}
        ).completion("q", context="no secrets here")
    assert result.answer == f"the key is {ENV_KEY}"  # the caller gets the real answer
    saved = result.trace.save(tmp_path / "saved.jsonl")
    html = render_html(result.trace.events)
    for text in (path.read_text(), saved.read_text(), html):
        for key in (ENV_KEY, ATTR_KEY, HIDDEN_KEY, "hunter2pass"):
            assert key not in text
        assert MASK in text
    config = Trace.load(path).of(RunStarted)[0].config
    assert config["root"] == "keyed" and "limits" in config
    assert "api_key" not in json.dumps(config)


def test_redact_config_masks_credential_fields_only() -> None:
    config = {
        "root": "openai:gpt-5",
        "api_key": "sk-whatever-long-enough",
        "limits": {"max_tokens": 1000, "max_subcalls": 5},
        "backend": {"auth_token": "abcdefghijkl", "base_url": "http://u:longpassword@h/v1"},
        "nested": [{"secret": "x" * 20}],
    }
    out = redact_config(config)
    assert out["api_key"] == MASK
    assert out["limits"] == {"max_tokens": 1000, "max_subcalls": 5}  # a limit is no token
    assert out["backend"]["auth_token"] == MASK
    assert out["backend"]["base_url"] == "http://***@h/v1"
    assert out["nested"] == [{"secret": MASK}]
    assert config["api_key"] == "sk-whatever-long-enough"  # the input is not changed


def test_scrub_ignores_short_values_and_registers_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_TOKEN", "short")  # too short to be a key: not masked everywhere
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    assert scrub("short hf_abcdefghijklmnop") == f"short {MASK}"

    class Holder:
        api_key = "registered-key-1234567"

        def key(self) -> str:  # a method named like a key attribute is not a key
            return "not-a-value"

    register_secrets_of([Holder()])
    assert scrub("x registered-key-1234567 y not-a-value") == f"x {MASK} y not-a-value"
