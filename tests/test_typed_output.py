"""Typed answers (issue 14, point 3): ``completion(..., output_type=...)`` validates the final
value, shows a mismatch to the model, and fails with a typed error once corrections run out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict  # pydantic needs it for TypedDicts before 3.12

from recursor import RLM
from recursor.errors import OutputValidationError
from recursor.output import OutputSpec
from recursor.testing import ScriptedLM
from tests.conftest import code, make_rlm

ENVS = ["inprocess", "subprocess"]


class Person(BaseModel):
    name: str
    age: int


class PersonDict(TypedDict):
    name: str
    age: int


@dataclasses.dataclass
class PersonData:
    name: str
    age: int


PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}

ADA = "FINAL({'name': 'Ada', 'age': 36})"
CASES: list[tuple[Any, str, Any]] = [
    (Person, ADA, Person(name="Ada", age=36)),
    (PersonDict, ADA, {"name": "Ada", "age": 36}),
    (PersonData, ADA, PersonData("Ada", 36)),
    (PERSON_SCHEMA, ADA, {"name": "Ada", "age": 36}),
    (int, "FINAL(6 * 7)", 42),
    (list[str], "FINAL(['a', 'b'])", ["a", "b"]),
]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize(("output_type", "final", "expected"), CASES)
def test_each_output_type_is_validated(
    env: str, output_type: Any, final: str, expected: Any
) -> None:
    root = ScriptedLM([code(final)])
    with make_rlm(env, root, max_depth=0) as rlm:
        result = rlm.completion("who?", "Ada is 36.", output_type=output_type)
    assert result.ok, result.error
    assert result.output == expected
    assert isinstance(result.answer, str)  # the text stays the text
    # the prompt showed the schema
    system = root.calls[0][0]["content"]
    assert "JSON Schema" in system
    assert json.dumps(OutputSpec(output_type).schema, indent=1) in system


@pytest.mark.parametrize("env", ENVS)
def test_a_mismatch_is_corrected_on_the_second_try(env: str) -> None:
    root = ScriptedLM(
        [
            code("FINAL({'name': 'Ada', 'age': 'thirty-six'})"),
            code("FINAL({'name': 'Ada', 'age': 36})"),
        ]
    )
    with make_rlm(env, root, max_depth=0) as rlm:
        result = rlm.completion("who?", "Ada is 36.", output_type=Person)
    assert result.ok and result.output == Person(name="Ada", age=36)
    assert result.iterations == 2
    told = root.calls[1][-1]["content"]
    assert "does not match" in told and "age" in told
    root.assert_complete()


@pytest.mark.parametrize("env", ENVS)
def test_retries_exhausted_is_a_typed_error(env: str) -> None:
    wrong = code("FINAL({'name': 'Ada'})")
    root = ScriptedLM([wrong, wrong, wrong])
    with make_rlm(env, root, max_depth=0, max_output_retries=2) as rlm:
        result = rlm.completion("who?", "Ada is 36.", output_type=Person)
    assert result.stop_reason == "error" and result.output is None
    assert isinstance(result.error, OutputValidationError)
    assert any("age" in e for e in result.error.errors)
    assert result.iterations == 3  # the first answer and two corrections
    root.assert_complete()
    with (
        make_rlm(
            env, ScriptedLM([wrong]), max_depth=0, max_output_retries=0, raise_errors=True
        ) as rlm,
        pytest.raises(OutputValidationError),
    ):
        rlm.completion("who?", "Ada is 36.", output_type=Person)


@pytest.mark.parametrize("env", ENVS)
def test_final_var_and_json_text(env: str) -> None:
    """FINAL_VAR of a dict carries the object; FINAL of JSON text outside code is parsed."""
    root = ScriptedLM([code("p = {'name': 'Ada', 'age': 36}\nFINAL_VAR('p')")])
    with make_rlm(env, root, max_depth=0) as rlm:
        result = rlm.completion("who?", "x", output_type=PersonDict)
    assert result.output == {"name": "Ada", "age": 36}
    root = ScriptedLM(['FINAL({"name": "Ada", "age": 36})'])
    with make_rlm(env, root, max_depth=0) as rlm:
        result = rlm.completion("who?", "x", output_type=PERSON_SCHEMA)
    assert result.output == {"name": "Ada", "age": 36}


def test_untyped_runs_are_unchanged() -> None:
    root = ScriptedLM([code("FINAL({'a': 1})")])
    with make_rlm("inprocess", root, max_depth=0) as rlm:
        result = rlm.completion("q", "x")
    assert result.answer == "{'a': 1}" and result.output is None
    assert "JSON Schema" not in root.calls[0][0]["content"]


def test_bad_schema_is_a_configuration_error() -> None:
    from recursor.errors import ConfigurationError

    with RLM(ScriptedLM([]), environment="inprocess") as rlm, pytest.raises(ConfigurationError):
        rlm.completion("q", "x", output_type={"type": "no-such-type"})


def test_acompletion_typed() -> None:
    root = ScriptedLM([code("FINAL(['x', 'y'])")])

    async def go() -> Any:
        async with make_rlm("inprocess", root, max_depth=0) as rlm:
            return await rlm.acompletion("q", "x", output_type=list[str])

    result = asyncio.run(go())
    assert result.output == ["x", "y"]
    assert json.loads(json.dumps(result.output)) == ["x", "y"]


@pytest.mark.parametrize("env", ENVS)
def test_the_object_crosses_the_channel_as_json(env: str) -> None:
    """A value whose str() is no literal (a pydantic model the cell defines) still validates:
    the REPL sends the object as JSON, not its str()."""
    body = (
        "from pydantic import BaseModel\n"
        "class P(BaseModel):\n    name: str\n    age: int\n"
        "FINAL(P(name='Ada', age=36))"
    )
    root = ScriptedLM([code(body)])
    with make_rlm(env, root, max_depth=0) as rlm:
        result = rlm.completion("who?", "x", output_type=Person)
    assert result.ok, result.error
    assert result.answer == "name='Ada' age=36"
    assert result.output == Person(name="Ada", age=36)
