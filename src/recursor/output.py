"""Typed answers: ``completion(..., output_type=...)``.

An :class:`OutputSpec` turns what the caller asked for (a pydantic model, a TypedDict or a
dataclass, a plain type such as ``int`` or ``list[str]``: anything pydantic's ``TypeAdapter``
takes; or a JSON Schema dict, checked with ``jsonschema``) into the schema the prompt shows and
a check of the final value. The engine calls :meth:`OutputSpec.check` where it accepts a final
answer; a mismatch goes back to the model as an observation listing the validation errors.

The final value is what the REPL carried as JSON (``FINAL(obj)`` of a non-string, see
:mod:`recursor.sandbox.state`), else the answer text read as JSON, else as a Python literal
(``str()`` of a dict a ``FINAL_VAR`` outside code reads back), else the text itself.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from recursor import prompts
from recursor.errors import ConfigurationError

#: the version of the two templates this module fills (package data under prompts/)
OUTPUT_PROMPT_VERSION = "v1"
#: characters of the schema shown in the prompt (a huge generated schema is cut, not sent whole)
_SCHEMA_CHARS = 6_000
#: validation errors listed per retry, and characters of each (jsonschema's messages quote the
#: offending value, which may be the whole of a long answer)
_MAX_ERRORS = 10
_ERROR_CHARS = 300


def _clip(message: str) -> str:
    return message if len(message) <= _ERROR_CHARS else message[: _ERROR_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class Checked:
    """A final answer checked: the typed value, or what is wrong with it."""

    value: Any = None
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def _strip_fence(text: str) -> str:
    t = text.strip()
    if t.startswith("```") and t.endswith("```") and t.count("\n") >= 1:
        t = t.split("\n", 1)[1].rsplit("```", 1)[0]
    return t.strip()


def _candidate(text: str, as_json: str | None) -> Any:
    """The value the model meant by its final answer (see the module docstring)."""
    if as_json is not None:
        return json.loads(as_json)
    body = _strip_fence(text)
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        return ast.literal_eval(body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


class OutputSpec:
    """The schema of a typed answer and its check."""

    def __init__(self, output_type: Any) -> None:
        self.output_type = output_type
        if isinstance(output_type, dict):
            import jsonschema  # type: ignore[import-untyped]  # ships no type information

            try:
                cls = jsonschema.validators.validator_for(output_type)
                cls.check_schema(output_type)
            except jsonschema.SchemaError as exc:
                raise ConfigurationError(f"output_type: not a JSON Schema: {exc.message}") from None
            self._validator: Any = cls(output_type)
            self._adapter: Any = None
            self.schema: dict[str, Any] = output_type
        else:
            from pydantic import PydanticSchemaGenerationError, PydanticUserError, TypeAdapter

            try:
                self._adapter = TypeAdapter(output_type)
                self.schema = self._adapter.json_schema()
            except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
                raise ConfigurationError(
                    f"output_type {output_type!r} has no JSON Schema: {exc}"
                ) from None
            self._validator = None

    def instructions(self) -> str:
        """What the prompt says about the answer's shape (added to the system prompt)."""
        return prompts.template("typed_output", OUTPUT_PROMPT_VERSION).substitute(
            schema=self._schema_text()
        )

    def _schema_text(self) -> str:
        text = json.dumps(self.schema, indent=1)
        if len(text) > _SCHEMA_CHARS:
            text = json.dumps(self.schema, separators=(",", ":"))[:_SCHEMA_CHARS] + " …(cut)"
        return text

    def direct_instructions(self) -> str:
        """What a direct call's system prompt says about the reply's shape."""
        return prompts.template("typed_direct", OUTPUT_PROMPT_VERSION).substitute(
            schema=self._schema_text()
        )

    def retry_message(self, checked: Checked, left: int) -> str:
        errors = "\n".join(f"- {e}" for e in checked.errors)
        return prompts.template("typed_retry", OUTPUT_PROMPT_VERSION).substitute(
            errors=errors, left=f"{left} correction{'s' if left != 1 else ''}"
        )

    def check(self, text: str, as_json: str | None = None) -> Checked:
        """Validate a final answer: its JSON value when the REPL carried one, else its text."""
        try:
            value = _candidate(text, as_json)
        except ValueError as exc:  # JSON the REPL made is always valid; kept for safety
            return Checked(errors=(f"not JSON: {exc}",))
        if self._adapter is not None:
            from pydantic import ValidationError

            try:
                return Checked(self._adapter.validate_python(value))
            except ValidationError as exc:
                found = [
                    f"{'.'.join(str(p) for p in e['loc']) or '(the value)'}: {e['msg']}"
                    for e in exc.errors()
                ]
                return Checked(errors=tuple(_clip(e) for e in found[:_MAX_ERRORS]))
        found = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(the value)'}: {e.message}"
            for e in self._validator.iter_errors(value)
        ]
        if not found:
            return Checked(value)
        return Checked(errors=tuple(_clip(e) for e in found[:_MAX_ERRORS]))


@dataclass(frozen=True, slots=True)
class TypedAnswer:
    """What the engine enforces on a root run's final answer: the spec, and how many rejected
    answers the model may correct before the run fails with ``OutputValidationError``."""

    spec: OutputSpec
    max_retries: int = 2
