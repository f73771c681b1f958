"""API keys never reach a trace file: config, printed environment, model objects, URLs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recursor import RLM
from recursor.apps.viewer import render_html
from recursor.lm.base import Completion, Message
from recursor.sandbox.inprocess import InProcessEnvironment
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
    # the key is in the environment: only a caller who says it trusts the model runs in-process
    trusted = InProcessEnvironment(trusted=True)
    with JsonlSink(path, store_context=True) as sink:
        result = RLM(
            root, environment=trusted, sinks=[sink], models={"other": EndpointLM()}
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


ODD_KEY = "sk-T0k~~~en???/+ key=1&xZ"  # its base64 has + and /, its URL form %XX and +


def _encoded_forms(key: str) -> dict[str, str]:
    import base64
    from urllib.parse import quote, quote_plus

    raw = key.encode()
    std = base64.b64encode(raw).decode()
    safe = base64.urlsafe_b64encode(raw).decode()
    assert "+" in std and "/" in std and safe != std and std.endswith("=")
    forms = {
        "base64": std,
        "base64 unpadded": std.rstrip("="),
        "urlsafe": safe,
        "urlsafe unpadded": safe.rstrip("="),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "url-encoded": quote(key, safe=""),
        "url-encoded lower": re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(key, safe="")),
        "form-encoded": quote_plus(key),
    }
    # inside a longer base64 text, at each alignment (an encoded Authorization header)
    for prefix in ("Bearer ", "Bearer x", "Bearer xy"):
        forms[f"base64 after {prefix!r}"] = base64.b64encode(f"{prefix}{key}!".encode()).decode()
        forms[f"urlsafe after {prefix!r}"] = base64.urlsafe_b64encode(
            f"{prefix}{key}?".encode()
        ).decode()
    return forms


def test_encoded_forms_of_a_key_are_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import base64

    from recursor.trace import CellRan, redact

    monkeypatch.setattr(redact, "_registered", set())
    redact.register_secret(ODD_KEY)
    forms = _encoded_forms(ODD_KEY)
    path = tmp_path / "t.jsonl"
    with JsonlSink(path) as sink:
        for name, form in forms.items():
            sink(
                CellRan(
                    "r1",
                    iteration=1,
                    index=0,
                    code=name,
                    stdout=f"printed: {form} (end)",
                    stderr="",
                    error=None,
                    duration_s=0.1,
                    timed_out=False,
                    lost_state=False,
                    final=None,
                )
            )
    lines = path.read_text().splitlines()
    assert len(lines) == len(forms)
    for (name, form), line in zip(forms.items(), lines, strict=True):
        stdout = json.loads(line)["stdout"]
        assert form not in stdout and MASK in stdout, (name, stdout)
        assert stdout.startswith("printed: ") and stdout.endswith(" (end)"), name
        # no 12-character run of the key's base64 is left either
        std = base64.b64encode(ODD_KEY.encode()).decode()
        assert all(std[i : i + 12] not in stdout for i in range(len(std) - 12)), (name, stdout)
    # innocent text that merely looks encoded stays as it is
    assert scrub("aGVsbG8gd29ybGQ= 68656c6c6f %41%42") == "aGVsbG8gd29ybGQ= 68656c6c6f %41%42"


def test_a_key_from_the_environment_is_masked_when_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    monkeypatch.setenv("SOME_SERVICE_TOKEN", ENV_KEY)
    line = f"b64 {base64.b64encode(ENV_KEY.encode()).decode()} hex {ENV_KEY.encode().hex()}"
    assert scrub(line) == f"b64 {MASK} hex {MASK}"
