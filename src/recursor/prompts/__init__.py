"""Versioned prompt templates (package data) and the functions that fill them.

Templates use ``string.Template`` ($name) so that code in examples may contain braces. The
system prompt advertises exactly the names the REPL injects, and which of them work at this
depth; the version is recorded in every trace.

Versions: ``v1`` is the first set; ``v2`` (the default) holds only the templates it changes and
reads every other one from ``v1``, so a template added to ``v1`` serves both. v2 advertises the
REPL helpers (grep, chunks, llm_map), and its compact prompt shows one worked example chosen by
the question (:func:`recursor.strategy.classify`) instead of v1's single look-up.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Literal

from recursor.context import ContextMeta
from recursor.errors import ConfigurationError
from recursor.sandbox.base import CellResult
from recursor.strategy import Kind

#: every version, oldest first; a version falls back to the ones before it
VERSIONS = ("v1", "v2")
#: the newest version (templates read without a version name this one)
PROMPT_VERSION = "v2"
#: what an RLM runs unless ``prompt_version=`` says otherwise. v1: on the embedded 1.5B model the
#: demo's needle (1M characters) was answered under v1 and missed under v2 (12 turns of a regex
#: for a phrase the text does not hold), so v2 stays opt-in until its matrix is measured
DEFAULT_VERSION = "v1"


def _lookup(name: str, version: str) -> Template | None:
    if version not in VERSIONS:
        raise ConfigurationError(
            f"unknown prompt version {version!r}; known: {', '.join(VERSIONS)}"
        )
    for v in reversed(VERSIONS[: VERSIONS.index(version) + 1]):
        path = resources.files(__package__).joinpath(v, f"{name}.txt")
        if path.is_file():
            return Template(path.read_text("utf-8").rstrip("\n"))
    return None


@functools.cache
def template(name: str, version: str = PROMPT_VERSION) -> Template:
    """The template ``name`` of ``version``, or of the newest earlier version that has it."""
    found = _lookup(name, version)
    if found is None:
        raise FileNotFoundError(f"no prompt template {name!r} in {version} or before it")
    return found


@functools.cache
def has_template(name: str, version: str) -> bool:
    return _lookup(name, version) is not None


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
    #: the program the question needs (recursor.strategy.classify); picks v2's worked example
    kind: Kind = "lookup"


def _host_functions(s: PromptSettings) -> str:
    """The lines for ``budget()`` and the caller's tools, after the REPL's own names."""
    parts = []
    if s.budget:  # the compact prompt's line is short: small models read every token each turn
        name = "compact_functions_budget" if s.style == "compact" else "functions_budget"
        parts.append(template(name, s.version).template)
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
                way=worked_example(s),
            )
            .replace("\n\n- `FINAL_VAR", "\n- `FINAL_VAR")
        )
    helpers = "helpers_llm" if s.llm else "helpers_none"
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
    if has_template(helpers, v):
        functions += "\n" + template(helpers, v).template
    functions += _host_functions(s)
    return template("system", v).substitute(
        functions=functions,
        subcall_strategy=strategy,
        example=example,
        max_output_chars=f"{s.max_output_chars:,}",
    )


def worked_example(s: PromptSettings) -> str:
    """The compact prompt's example for the question's kind ("" where the version has none).
    Without ``llm_query`` (depth 0) reading and labelling fall back to the look-up."""
    kind = s.kind if s.llm or s.kind in ("lookup", "chain") else "lookup"
    name = f"way_{kind}"
    return template(name, s.version).template if has_template(name, s.version) else ""


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
