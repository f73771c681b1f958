"""One host tool: the caller's function, its name in the REPL, and how the prompt shows it.

``RLM(tools=[fn, Tool(fn, name=..., description=..., timeout_s=...)])``: a plain function is
wrapped with its own name and the first paragraph of its docstring. Names the REPL cannot bind
as they are (one of its own names, a builtin, a keyword, not an identifier) are refused here,
when the RLM is made, with :class:`~recursor.errors.ToolNameError`, never later in a cell.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
from collections.abc import Callable
from typing import Any

from recursor.errors import ConfigurationError, ToolNameError
from recursor.sandbox.repl import RESERVED

#: seconds a tool call may take unless its Tool says otherwise
DEFAULT_TIMEOUT_S = 30.0
#: characters of a tool's description shown in the prompt
MAX_DESCRIPTION_CHARS = 600
#: names the REPL's namespace holds besides RESERVED (a tool must not replace them either)
_REPL_OWN = frozenset({"input", "__name__", "__builtins__"})


def check_name(name: object) -> str:
    """``name`` if model code can call a tool by it; ToolNameError saying why not otherwise."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ToolNameError(f"tool name {name!r} is not a Python identifier")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ToolNameError(f"tool name {name!r} is a Python keyword")
    if name in RESERVED or name in _REPL_OWN:
        raise ToolNameError(
            f"tool name {name!r} would shadow the REPL's own {name!r}; give the tool another "
            "name: Tool(fn, name=...)"
        )
    if name.startswith("__") or hasattr(builtins, name):
        raise ToolNameError(
            f"tool name {name!r} would shadow a Python builtin; give it another name"
        )
    return name


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line, clipped for the prompt."""
    if not doc:
        return ""
    para = inspect.cleandoc(doc).split("\n\n", 1)[0]
    text = " ".join(para.split())
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[: MAX_DESCRIPTION_CHARS - 1] + "…"
    return text


def signature_of(fn: Callable[..., Any]) -> str:
    """``(a: int, b: str = 'x') -> str``, annotations evaluated where they can be."""
    try:
        sig = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return "(...)"
    except ValueError:
        return "(...)"
    return str(sig)


class Tool:
    """A host function model code may call: ``fn`` (sync or async) under ``name``.

    ``description`` defaults to the first paragraph of ``fn``'s docstring, ``signature`` (the
    text after the name in the prompt) to the function's own. ``timeout_s`` bounds one call:
    an async tool past it is cancelled; a sync one cannot be stopped from outside, so its
    thread is abandoned (it may still finish in the background) and the cell gets
    :class:`~recursor.errors.ToolTimeout` either way. ``None``: no bound.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        signature: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"a tool must be callable, not {type(fn).__name__}")
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigurationError(f"Tool timeout_s must be > 0 or None, not {timeout_s!r}")
        self.fn = fn
        self.name = check_name(name if name is not None else getattr(fn, "__name__", None))
        self.description = (
            first_paragraph(description)
            if description is not None
            else first_paragraph(inspect.getdoc(fn))
        )
        self.timeout_s = timeout_s
        self.signature = signature if signature is not None else signature_of(fn)
        call = fn if inspect.isroutine(fn) else type(fn).__call__
        self.is_async = inspect.iscoroutinefunction(call)

    def prompt_line(self) -> str:
        """How the system prompt lists this tool."""
        line = f"- `{self.name}{self.signature}`"
        return line + (f": {self.description}" if self.description else "")

    def __repr__(self) -> str:
        return f"Tool({self.name}{self.signature}, timeout_s={self.timeout_s})"


def as_tool(item: Tool | Callable[..., Any]) -> Tool:
    return item if isinstance(item, Tool) else Tool(item)
