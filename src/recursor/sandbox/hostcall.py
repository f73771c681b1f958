"""Calls from model code to the host's tools: what crosses the worker channel, and the checks.

A tool is a function of the caller that runs on the host (``RLM(tools=[...])``); model code
calls it by name in the REPL. The arguments and the result cross as JSON values only (never
pickle): :func:`check_json` refuses, with a message that says where, anything JSON cannot carry
exactly (a set, bytes, an object, a NaN, a dict with non-string keys), so model code gets a
clear TypeError instead of a silently changed value. ``budget`` is a host call too, answered
from the run's ledger; it is not a tool and is never counted as one.

The sandbox side (the REPL) only builds a :class:`ToolRequest` and reads a
:class:`ToolResponse`; what a tool may do is decided on the host. Standard library only: the
worker imports this inside sandboxes that have nothing else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

#: bytes of JSON the arguments of one tool call, or its result, may take: a tool call is a
#: function call, not a way to move the context around (that is what ``context`` is for)
MAX_TOOL_JSON = 4 << 20
#: nesting depth of a tool's arguments or result
MAX_TOOL_DEPTH = 64
#: the host call ``budget()`` makes (a REPL name, so no tool can take it)
BUDGET = "budget"


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """Model code called tool ``name`` with these (JSON) arguments."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ToolResponse:
    """The tool's JSON result, or its error (the message, and the recursor.errors class name
    the REPL raises it as)."""

    value: Any = None
    error: str | None = None
    error_type: str | None = None

    @classmethod
    def failure(cls, message: str, error_type: str = "ToolError") -> ToolResponse:
        return cls(None, message, error_type)


class ToolHandler(Protocol):
    """Serves one REPL's tool calls on the host (built per run node by :mod:`recursor.tools`)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The tools the REPL binds, by name."""
        ...

    def submit(self, request: ToolRequest, done: Callable[[ToolResponse], None]) -> None:
        """Start the call and return at once; ``done`` is called once, on any thread, with the
        response (errors included: it never raises)."""
        ...


def check_json(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is plain JSON: None, bool, int, finite float, str, and
    lists/tuples and str-keyed dicts of those, at most :data:`MAX_TOOL_DEPTH` deep."""
    todo: list[tuple[Any, str, int]] = [(value, where, 0)]
    while todo:
        v, at, depth = todo.pop()
        t = type(v)
        if v is None or t is bool or t is int or t is str:
            continue
        if t is float:
            if not math.isfinite(v):
                raise TypeError(f"{at} is {v}, which JSON cannot carry")
            continue
        if depth >= MAX_TOOL_DEPTH:
            raise TypeError(f"{at} is nested more than {MAX_TOOL_DEPTH} levels deep")
        if t is list or t is tuple:
            todo.extend((item, f"{at}[{i}]", depth + 1) for i, item in enumerate(v))
        elif t is dict:
            for k, item in v.items():
                if type(k) is not str:
                    raise TypeError(f"{at} has a key of type {type(k).__name__}; JSON keys are str")
                todo.append((item, f"{at}[{k[:40]!r}]", depth + 1))
        else:
            raise TypeError(
                f"{at} is a {t.__name__}, which JSON cannot carry (use str, int, float, bool, "
                "None, list or dict)"
            )


def check_size(value: Any, where: str) -> None:
    """Raise ValueError when ``value`` takes more than :data:`MAX_TOOL_JSON` bytes as JSON."""
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_TOOL_JSON:
        raise ValueError(f"{where} is {size:,} bytes of JSON; the limit is {MAX_TOOL_JSON:,}")


def copy_json(value: Any) -> Any:
    """A deep copy through JSON: what the other side of a worker channel would get (tuples
    become lists). The in-process REPL uses it so a tool sees the same thing everywhere."""
    return json.loads(json.dumps(value))
