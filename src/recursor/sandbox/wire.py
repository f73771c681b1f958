"""The worker channel's frames, typed: one small record per kind, and one way to read them.

:mod:`~recursor.sandbox.framing` moves JSON objects; this module says which objects are frames
and what they hold. Host -> worker: ``init``, ``exec``, ``get_var``, ``subcall_result``,
``bind``, ``background_result``, ``tool_result``, ``shutdown``. Worker -> host: ``ready``,
``fatal``, ``result``, ``var``, ``bound``, ``subcall``, ``background``, ``tool_call`` (a call of
a host tool, :mod:`~recursor.sandbox.hostcall`). Both ends
(``session.py`` on the host, ``worker.py`` in the sandbox) build and read frames only through
these records, so the protocol is written down once.

Reading never trusts the other side: :func:`parse` checks the op, that the kind is one the
reader expects in its current state, that every field is there with the declared type and
that there is nothing else, then the record's own :meth:`Frame.check`. Whatever is wrong is a
:class:`~recursor.errors.ProtocolError`; no TypeError, KeyError or ValueError gets out.

``json.loads`` accepts ``NaN`` and ``Infinity`` (and ``1e400`` overflows to infinity), which
are not JSON and would end up in traces no JSON reader accepts. So a ``float`` field must be
finite (a forged ``"duration_s": NaN`` is a ProtocolError); inside ``Any`` values (model data,
such as a child's context, where a NaN can be honest) a non-finite number becomes ``None``.

Adding a frame kind is one record; its fields' annotations are its schema::

    @frame("progress")
    class Progress(Frame):
        id: int
        note: str
        values: dict[str, Any]

then naming it where it may arrive: ``parse(raw, (Result, Subcall, Progress))`` (and in
:data:`FROM_WORKER` or :data:`TO_WORKER`). Field types may be ``str``, ``int``, ``float``,
``bool``, ``None``, ``Any``, ``Literal[...]``, unions, ``list[...]``, ``dict[str, ...]`` and
dataclasses made of those (checked field by field, the same way).

Standard library only: the worker imports this inside sandboxes that have nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, dataclass_transform

from recursor.context import ContextMeta
from recursor.errors import ProtocolError
from recursor.sandbox.base import (
    BackgroundRequest,
    BackgroundStatus,
    CellResult,
    SubcallRequest,
    SubcallResponse,
)
from recursor.sandbox.hardening import Measure
from recursor.sandbox.hostcall import ToolRequest, ToolResponse

#: every frame kind, by op (filled by :func:`frame`)
FRAMES: dict[str, type[Frame]] = {}
_F = TypeVar("_F", bound="type[Frame]")


class Frame:
    """One frame kind. Subclasses are made with :func:`frame`, which sets :attr:`op`."""

    __slots__ = ()
    op: ClassVar[str] = ""

    def check(self) -> None:
        """Rules across fields (the types are checked already); raise ProtocolError."""

    def to_wire(self) -> dict[str, Any]:
        """The JSON object that goes on the channel."""
        return {"op": self.op, **dataclasses.asdict(self)}  # type: ignore[call-overload]


@dataclass_transform(frozen_default=True)
def frame(op: str) -> Callable[[_F], _F]:
    """Make ``cls`` a frozen dataclass and the record of frames whose op is ``op``."""

    def register(cls: _F) -> _F:
        if op in FRAMES:
            raise ValueError(f"frame op {op!r} is defined twice")
        cls.op = op
        made = typing.cast(_F, dataclass(frozen=True, slots=True)(cls))
        FRAMES[op] = made
        return made

    return register


# -- host -> worker -----------------------------------------------------------------------------


@frame("init")
class Init(Frame):
    """Load the context and confine yourself; answered by ``ready`` or ``fatal``."""

    context_path: str
    context_kind: Literal["text", "json"]
    rlimits: dict[str, int | None]
    #: what the worker does to itself (see hardening.py); None: nothing
    sandbox: dict[str, Any] | None
    source: str | None = None
    #: the host serves background sub-calls: the REPL offers ``llm_query_async`` and the rest
    background: bool = False
    #: the host's tools the REPL binds, by name (None: none)
    tools: list[str] | None = None


@frame("exec")
class Exec(Frame):
    code: str
    output_limit: int


@frame("get_var")
class GetVar(Frame):
    name: str


@frame("subcall_result")
class SubcallResult(Frame):
    id: int
    response: SubcallResponse

    def check(self) -> None:
        r = self.response
        if not len(r.results) == len(r.errors) == len(r.error_types):
            raise ProtocolError("a sub-call response needs one result, error and type each")


@frame("bind")
class Bind(Frame):
    """Bind ``value`` to ``name`` in the namespace, protected like ``context`` (a session's
    ``history``, a context added later as ``context_1``); answered by ``bound``."""

    name: str
    value: Any


@frame("background_result")
class BackgroundResult(Frame):
    id: int
    status: BackgroundStatus

    def check(self) -> None:
        s = self.status
        n = len(s.handles)
        if not len(s.done) == len(s.results) == len(s.errors) == len(s.error_types) == n:
            raise ProtocolError("a background status needs one state, result and error each")


@frame("tool_result")
class ToolResult(Frame):
    id: int
    response: ToolResponse


@frame("shutdown")
class Shutdown(Frame):
    pass


# -- worker -> host -----------------------------------------------------------------------------


@frame("ready")
class Ready(Frame):
    meta: ContextMeta
    pid: int
    #: the confinement measures the worker put in force
    measures: list[Measure]


@frame("fatal")
class Fatal(Frame):
    error: str


@frame("result")
class Result(Frame):
    cell: CellResult


@frame("var")
class Var(Frame):
    value: str | None


@frame("bound")
class Bound(Frame):
    """The value of a ``bind`` is in place; its metadata, computed where it lives."""

    meta: ContextMeta


@frame("subcall")
class Subcall(Frame):
    """A sub-call from model code: it is untrusted, so the id must be the worker's integer and
    the contexts, when given, one per prompt."""

    id: int
    request: SubcallRequest

    def check(self) -> None:
        contexts = self.request.contexts
        if contexts is not None and len(contexts) != len(self.request.prompts):
            raise ProtocolError("a request's contexts must be a list, one per prompt")


@frame("background")
class Background(Frame):
    """``llm_query_async`` and the rest, from model code: untrusted like a sub-call (its
    handles are checked by the host, which knows which ones it gave out)."""

    id: int
    request: BackgroundRequest

    def check(self) -> None:
        r = self.request
        if r.op == "start" and r.request is None:
            raise ProtocolError("a background start needs a request")
        inner = r.request
        if inner is not None and inner.contexts is not None:
            contexts, prompts = inner.contexts, inner.prompts
            if len(contexts) != len(prompts):
                raise ProtocolError("a request's contexts must be a list, one per prompt")
        if r.timeout is not None and r.timeout < 0:
            raise ProtocolError("a wait's timeout must be >= 0")


@frame("tool_call")
class ToolCall(Frame):
    """A call of a host tool (or of ``budget``) from model code: untrusted like a sub-call;
    the host checks the name and the size of the arguments before anything runs."""

    id: int
    request: ToolRequest


TO_WORKER: tuple[type[Frame], ...] = (
    Init,
    Exec,
    GetVar,
    Bind,
    SubcallResult,
    BackgroundResult,
    ToolResult,
    Shutdown,
)
FROM_WORKER: tuple[type[Frame], ...] = (
    Ready,
    Fatal,
    Result,
    Var,
    Bound,
    Subcall,
    Background,
    ToolCall,
)


# -- reading ------------------------------------------------------------------------------------


def parse(raw: dict[str, Any], expected: tuple[type[Frame], ...]) -> Frame:
    """The frame ``raw`` holds, checked, if it is of one of the ``expected`` kinds."""
    op = raw.get("op")
    kind = FRAMES.get(op) if isinstance(op, str) else None
    if kind is None or not isinstance(op, str):
        raise ProtocolError(f"unknown frame op {_show(op)}")
    if kind not in expected:
        wanted = " or ".join(repr(k.op) for k in expected)
        raise ProtocolError(f"a {op!r} frame where {wanted} was expected")
    fields = {k: v for k, v in raw.items() if k != "op"}
    try:
        parsed = _record(kind, fields, op)
        assert isinstance(parsed, Frame)
        parsed.check()
    except ProtocolError as exc:
        raise ProtocolError(f"a bad {op!r} frame: {exc}") from None
    return parsed


def expect(got: Frame, expected: tuple[type[Frame], ...]) -> None:
    """Raise ProtocolError unless ``got`` is of one of the kinds the reader's state allows."""
    if not isinstance(got, expected):
        wanted = " or ".join(repr(k.op) for k in expected)
        raise ProtocolError(f"a {got.op!r} frame where {wanted} was expected")


def _show(value: Any) -> str:
    return repr(value)[:60]


def _record(cls: type[Any], value: Any, where: str) -> Any:
    """An instance of dataclass ``cls`` from a JSON object with exactly its fields."""
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    extra = set(value) - names
    if extra:
        raise ProtocolError(f"{where}: unknown field(s) {_show(sorted(map(str, extra)))}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in value:
            no_default = f.default is dataclasses.MISSING
            if no_default and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{where}: missing field {f.name!r}")
            continue
        kwargs[f.name] = _value(hints[f.name], value[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _value(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (and converted where JSON is looser)."""
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        return scalar(value, where)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _record(tp, value, where)
    generic = _GENERICS.get(typing.get_origin(tp))
    if generic is not None:
        return generic(typing.get_args(tp), value, where)
    raise TypeError(f"wire.py cannot check fields of type {tp!r} (at {where})")  # our bug


def _exact(
    kinds: tuple[type, ...], expected: str, convert: Callable[[Any], Any] = lambda v: v
) -> Callable[[Any, str], Any]:
    """A check that the JSON value is exactly of one of ``kinds`` (``type(v) is``, not
    ``isinstance``: a bool is an int to Python, never to the protocol)."""

    def check(value: Any, where: str) -> Any:
        if type(value) not in kinds:
            raise ProtocolError(f"{where}: expected {expected}, got {type(value).__name__}")
        return convert(value)

    return check


def _number(value: Any, where: str) -> float:
    """A JSON number as a float; NaN and the infinities are refused (``json.loads`` accepts
    them, and they would poison every sum and every trace line downstream)."""
    number = float(_exact((int, float), "a number")(value, where))
    if not math.isfinite(number):
        raise ProtocolError(f"{where}: {value} is not a finite number")
    return number


_NULL = _exact((type(None),), "null")
#: the leaf annotations, by the annotation itself
_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    Any: lambda value, where: _finite(value),
    None: _NULL,
    type(None): _NULL,
    str: _exact((str,), "str"),
    bool: _exact((bool,), "bool"),
    int: _exact((int,), "an integer"),
    float: _number,
}


def _literal(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value not in args or type(value) is bool:
        raise ProtocolError(f"{where}: expected one of {list(args)}, got {_show(value)}")
    return value


def _union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    for option in args:
        try:
            return _value(option, value, where)
        except ProtocolError:
            continue
    raise ProtocolError(f"{where}: {type(value).__name__} is none of the allowed types")


def _list(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")
    if args and args[0] is not Any:
        return [_value(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    return _finite(value)


def _dict(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")
    if args and args[1] is not Any:
        return {k: _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return _finite(value)


#: the generic annotations, by their origin (``typing.get_origin``)
_GENERICS: dict[Any, Callable[[tuple[Any, ...], Any, str], Any]] = {
    Literal: _literal,
    types.UnionType: _union,
    typing.Union: _union,
    list: _list,
    dict: _dict,
}


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (the same object when it has
    none, so a large clean value is not copied)."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        items = [_finite(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        pairs = {k: _finite(v) for k, v in value.items()}
        return value if all(pairs[k] is v for k, v in value.items()) else pairs
    return value
