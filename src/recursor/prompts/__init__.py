"""Versioned prompt templates (package data) and the functions that fill them.

Templates use ``string.Template`` ($name) so that code in examples may contain braces. The
system prompt advertises exactly the names the REPL injects, and which of them work at this
depth; the version is recorded in every trace.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Literal

from recursor.context import ContextMeta
from recursor.sandbox.base import CellResult

PROMPT_VERSION = "v1"


@functools.cache
def template(name: str, version: str = PROMPT_VERSION) -> Template:
    text = resources.files(__package__).joinpath(version, f"{name}.txt").read_text("utf-8")
    return Template(text.rstrip("\n"))


@dataclass(frozen=True, slots=True)
class PromptSettings:
    max_iterations: int
    max_output_chars: int
    #: llm_query works at this depth
    llm: bool
    #: what rlm_query does here: spawn a child RLM, one plain call, or nothing
    rlm: Literal["child", "plain", "none"]
    #: characters a sub-model reads per prompt (advertised in one unit, as the paper advises)
    sub_chars: int = 100_000
    version: str = PROMPT_VERSION
    #: "compact": a short prompt with one worked example, for small local models (prompt
    #: processing dominates their time on a CPU, and long prompts confuse them)
    style: Literal["full", "compact"] = "full"
    #: advertise ``budget()`` (one line); every REPL a run opens has it
    budget: bool = True
    #: the host's tools, one prompt line each (signature and first docstring paragraph)
    tools: tuple[str, ...] = ()


def _host_functions(s: PromptSettings) -> str:
    """The lines for ``budget()`` and the caller's tools, after the REPL's own names."""
    parts = []
    if s.budget:
        parts.append(template("functions_budget", s.version).template)
    if s.tools:
        parts.append(template("functions_tools", s.version).substitute(tools="\n".join(s.tools)))
    return "".join("\n" + p for p in parts)


def system_prompt(meta: ContextMeta, s: PromptSettings) -> str:
    v = s.version
    common = {
        "context_type": meta.type,
        "context_chars": f"{meta.total_chars:,}",
        "sub_chars": f"{s.sub_chars:,}",
    }
    if s.style == "compact":
        listed = template("compact_functions_llm" if s.llm else "compact_functions_none", v)
        functions = listed.substitute(common)
        if s.llm:
            functions += "\n" + template("compact_functions_background", v).template.rstrip()
        return (
            template("compact_system", v)
            .substitute(
                common,
                functions=functions + _host_functions(s),
                max_output_chars=f"{s.max_output_chars:,}",
            )
            .replace("\n\n- `FINAL_VAR", "\n- `FINAL_VAR")
        )
    if s.llm:
        functions = template("functions_llm", v).substitute(common)
        rlm = {"child": "functions_rlm", "plain": "functions_rlm_plain"}.get(s.rlm)
        if rlm:
            functions += "\n" + template(rlm, v).substitute(common)
        functions += "\n" + template("functions_background", v).template.rstrip()
        strategy = template("strategy_llm", v).substitute(common)
        example = template("example_llm", v).template
    else:
        functions = template("functions_none", v).substitute(common)
        strategy = template("strategy_none", v).template
        example = template("example_none", v).template
    functions += _host_functions(s)
    return template("system", v).substitute(
        functions=functions,
        subcall_strategy=strategy,
        example=example,
        max_output_chars=f"{s.max_output_chars:,}",
    )


def user_prompt(query: str, meta: ContextMeta, s: PromptSettings) -> str:
    name = "compact_user" if s.style == "compact" else "user"
    return template(name, s.version).substitute(
        query=query, context_meta=meta.render(), max_iterations=s.max_iterations
    )


def format_cell(index: int, cell: CellResult) -> str:
    parts = [f"[cell {index}] ran in {cell.duration_s:.3f} s"]
    if cell.stdout:
        parts.append("stdout:\n" + cell.stdout.rstrip("\n"))
    if cell.stderr:
        parts.append("stderr:\n" + cell.stderr.rstrip("\n"))
    if cell.error:
        parts.append("error:\n" + cell.error.rstrip("\n"))
    if not (cell.stdout or cell.stderr or cell.error):
        parts.append("(no output)")
    parts.extend(f"note: {n}" for n in cell.notes)
    return "\n".join(parts)


def observation(
    cells: list[CellResult], extra: list[str], iteration: int, s: PromptSettings
) -> str:
    body = "\n\n".join([format_cell(i + 1, c) for i, c in enumerate(cells)] + extra)
    return template("observation", s.version).substitute(
        cells=body, iteration=iteration, max_iterations=s.max_iterations
    )


def no_code(s: PromptSettings) -> str:
    return template("no_code", s.version).template


def last_turn(s: PromptSettings) -> str:
    return template("last_turn", s.version).template
