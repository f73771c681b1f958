"""The typed frames of the worker channel: every malformed frame is a ProtocolError."""

from __future__ import annotations

import json
from typing import Any

import pytest

from recursor.errors import ProtocolError
from recursor.sandbox import wire
from recursor.sandbox.base import CellResult, SubcallRequest, SubcallResponse

REQUEST = {"kind": "llm", "prompts": ["a", "b"], "batched": True, "model": None, "contexts": None}
RESPONSE = {"results": ["x"], "errors": [None], "error_types": [None], "raised": False}
META = {"type": "str", "total_chars": 3}
GOOD: list[dict[str, Any]] = [
    {
        "op": "init",
        "context_path": "/c",
        "context_kind": "text",
        "rlimits": {"open_files": 3, "cpu_seconds": None},
        "sandbox": None,
    },
    {"op": "exec", "code": "1", "output_limit": 100},
    {"op": "get_var", "name": "x"},
    {"op": "subcall_result", "id": 1, "response": RESPONSE},
    {"op": "shutdown"},
    {
        "op": "ready",
        "meta": META,
        "pid": 7,
        "measures": [{"name": "n", "in_force": True, "detail": ""}],
    },
    {"op": "fatal", "error": "boom"},
    {"op": "result", "cell": {"stdout": "hi", "duration_s": 1}},
    {"op": "var", "value": None},
    {"op": "subcall", "id": 3, "request": REQUEST},
]
ALL = tuple(wire.FRAMES.values())


@pytest.mark.parametrize("raw", GOOD, ids=[g["op"] for g in GOOD])
def test_each_kind_round_trips(raw: dict[str, Any]) -> None:
    frame = wire.parse(raw, ALL)
    assert frame.op == raw["op"]
    again = wire.parse(frame.to_wire(), ALL)
    assert again == frame


def test_nested_records_are_built() -> None:
    sub = wire.parse(GOOD[-1], wire.FROM_WORKER)
    assert isinstance(sub, wire.Subcall) and isinstance(sub.request, SubcallRequest)
    result = wire.parse(GOOD[7], wire.FROM_WORKER)
    assert isinstance(result, wire.Result) and isinstance(result.cell, CellResult)
    assert result.cell.duration_s == 1.0 and isinstance(result.cell.duration_s, float)
    done = wire.parse(GOOD[3], wire.TO_WORKER)
    assert isinstance(done, wire.SubcallResult) and isinstance(done.response, SubcallResponse)


BAD: list[tuple[str, dict[str, Any]]] = [
    ("unknown op", {"op": "teleport"}),
    ("op not a string", {"op": 3}),
    ("no op", {"code": "1"}),
    ("init: missing field", {"op": "init", "context_path": "/c", "context_kind": "text"}),
    ("init: bad kind", {**GOOD[0], "context_kind": "pickle"}),
    ("init: rlimit not int", {**GOOD[0], "rlimits": {"open_files": "3"}}),
    ("exec: extra field", {"op": "exec", "code": "1", "output_limit": 1, "shell": True}),
    ("exec: limit is bool", {"op": "exec", "code": "1", "output_limit": True}),
    ("exec: code not str", {"op": "exec", "code": 1, "output_limit": 1}),
    ("get_var: name missing", {"op": "get_var"}),
    (
        "subcall_result: lengths",
        {"op": "subcall_result", "id": 1, "response": {**RESPONSE, "errors": []}},
    ),
    ("shutdown: extra", {"op": "shutdown", "now": True}),
    ("ready: meta not object", {"op": "ready", "meta": "str", "pid": 1, "measures": []}),
    ("ready: measure field", {"op": "ready", "meta": META, "pid": 1, "measures": [{"name": 1}]}),
    ("fatal: error not str", {"op": "fatal", "error": ["x"]}),
    ("result: wrong type", {"op": "result", "cell": {"stdout": 3}}),
    ("result: unknown field", {"op": "result", "cell": {"secret": ""}}),
    ("result: notes not str", {"op": "result", "cell": {"notes": [1]}}),
    ("result: cell missing", {"op": "result"}),
    ("var: value not str", {"op": "var", "value": 3}),
    ("subcall: id not int", {"op": "subcall", "id": "1", "request": REQUEST}),
    ("subcall: id float", {"op": "subcall", "id": 1.0, "request": REQUEST}),
    ("subcall: id bool", {"op": "subcall", "id": True, "request": REQUEST}),
    ("subcall: request str", {"op": "subcall", "id": 1, "request": "x"}),
    ("subcall: bad kind", {"op": "subcall", "id": 1, "request": {**REQUEST, "kind": "shell"}}),
    ("subcall: prompts str", {"op": "subcall", "id": 1, "request": {**REQUEST, "prompts": "ab"}}),
    ("subcall: prompt int", {"op": "subcall", "id": 1, "request": {**REQUEST, "prompts": [1]}}),
    ("subcall: model int", {"op": "subcall", "id": 1, "request": {**REQUEST, "model": 3}}),
    ("subcall: contexts", {"op": "subcall", "id": 1, "request": {**REQUEST, "contexts": [1]}}),
    ("subcall: contexts obj", {"op": "subcall", "id": 1, "request": {**REQUEST, "contexts": {}}}),
    ("subcall: extra", {"op": "subcall", "id": 1, "request": REQUEST, "x": 1}),
]


@pytest.mark.parametrize("raw", [b[1] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_frames_are_protocol_errors(raw: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        wire.parse(raw, ALL)


def test_a_kind_the_state_does_not_allow_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="where 'result' or 'subcall' was expected"):
        wire.parse(GOOD[8], (wire.Result, wire.Subcall))
    # a worker may not send what only the host sends
    with pytest.raises(ProtocolError):
        wire.parse(GOOD[1], wire.FROM_WORKER)
    frame = wire.parse(GOOD[8], ALL)
    with pytest.raises(ProtocolError):
        wire.expect(frame, (wire.Ready,))


def test_a_new_frame_kind_is_one_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "FRAMES", dict(wire.FRAMES))

    @wire.frame("grep_call")
    class GrepCall(wire.Frame):
        id: int
        name: str
        arguments: dict[str, Any]

    raw = {"op": "grep_call", "id": 1, "name": "grep", "arguments": {"q": "x"}}
    call = wire.parse(raw, (wire.Result, GrepCall))
    assert call == GrepCall(1, "grep", {"q": "x"}) and call.to_wire() == raw
    with pytest.raises(ProtocolError):
        wire.parse({**raw, "id": "1"}, (GrepCall,))
    with pytest.raises(ProtocolError):  # not expected in this state
        wire.parse(raw, wire.FROM_WORKER)
    with pytest.raises(ValueError):  # an op is defined once
        wire.frame("grep_call")(type("Again", (wire.Frame,), {"__annotations__": {}}))


def test_tool_frames_carry_json_values_and_refuse_the_wrong_shape() -> None:
    raw = {
        "op": "tool_call",
        "id": 3,
        "request": {"name": "lookup", "args": [1, [2.5]], "kwargs": {"k": None}},
    }
    call = wire.parse(raw, wire.FROM_WORKER)
    assert isinstance(call, wire.ToolCall) and call.request.args == [1, [2.5]]
    assert call.to_wire() == raw
    for bad in ({"args": "x"}, {"kwargs": []}, {"name": 5}, {"extra": 1}):
        with pytest.raises(ProtocolError):
            wire.parse({**raw, "request": {**raw["request"], **bad}}, wire.FROM_WORKER)
    result = {
        "op": "tool_result",
        "id": 3,
        "response": {"value": {"a": 1}, "error": None, "error_type": None},
    }
    assert wire.parse(result, wire.TO_WORKER).to_wire() == result
    with pytest.raises(ProtocolError):  # the host's answer is never the worker's to send
        wire.parse(result, wire.FROM_WORKER)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_float_field_is_a_protocol_error(number: str) -> None:
    # json.loads (what framing uses) accepts all of these; a trace could not hold them
    cell = '{"stdout": "hi", "duration_s": ' + number + "}"
    raw = json.loads('{"op": "result", "cell": ' + cell + "}")
    with pytest.raises(ProtocolError, match=r"duration_s: .* not a finite number"):
        wire.parse(raw, wire.FROM_WORKER)


def test_non_finite_numbers_in_model_data_become_null() -> None:
    text = (
        '{"op": "subcall", "id": 1, "request": {"kind": "rlm", "prompts": ["a"],'
        ' "contexts": [{"rows": [1.5, NaN, {"x": Infinity}], "n": 2}]}}'
    )
    sub = wire.parse(json.loads(text), wire.FROM_WORKER)
    assert isinstance(sub, wire.Subcall)
    assert sub.request.contexts == [{"rows": [1.5, None, {"x": None}], "n": 2}]
    clean = json.loads(
        '{"op": "subcall", "id": 1, "request": {"kind": "rlm", "prompts": ["a"],'
        ' "contexts": [[1.5, 2]]}}'
    )
    contexts = clean["request"]["contexts"]
    parsed = wire.parse(clean, wire.FROM_WORKER)
    assert isinstance(parsed, wire.Subcall) and parsed.request.contexts is contexts  # no copy
