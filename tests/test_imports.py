"""The package's import graph, read from the source (ast): no circles, and the layers hold.

Every import counts: at the top of a module, inside a function (a lazy import is still a
dependency, only a later one) and under ``if TYPE_CHECKING:``. ``from recursor.x import y``
depends on the module ``recursor.x.y`` when there is one, else on ``recursor.x``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import recursor

SRC = Path(recursor.__file__).parent
#: above the core: programs that use it (CLI, benchmarks, trace apps, the demo, the server)
FRONT = (
    "recursor.cli",
    "recursor._cli_options",
    "recursor.bench",
    "recursor.demo",
    "recursor.serve",
)
APPS = ("recursor.apps",)


def _name(path: Path) -> str:
    parts = ["recursor", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in SRC.rglob("*.py")}


def imports_of(module: str) -> set[str]:
    """The recursor modules ``module`` imports, wherever in the file the import statement is."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules that import each other (strongly connected components of more than one
    module), each sorted: a module reaches another that reaches it back."""
    reach = {m: _reach(graph, m) for m in graph}
    components = {
        tuple(sorted({v} | {w for w in reach[v] if v in reach.get(w, ())})) for v in graph
    }
    return sorted(list(c) for c in components if len(c) > 1)


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(
        module == p or module.startswith(p + ".") or module.startswith(p + "_") for p in prefixes
    )


def test_the_checker_sees_every_kind_of_import() -> None:
    assert "recursor.rlm" in GRAPH["recursor.apps.replay"]  # a top-level import
    assert "recursor.rlm" in GRAPH["recursor.bench.methods"]  # imported inside a function
    assert "recursor.rlm" in GRAPH["recursor"]  # under TYPE_CHECKING
    assert "recursor.errors" in GRAPH["recursor.sandbox.repl"]  # from recursor import errors
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles() -> None:
    cycles = _cycles(GRAPH)
    detail = [
        f"{' <-> '.join(c)}: " + "; ".join(f"{m} -> {sorted(GRAPH[m] & set(c))}" for m in c)
        for c in cycles
    ]
    assert not cycles, "\n".join(detail)


def test_the_core_imports_nothing_above_it() -> None:
    upward = {
        m: sorted(d for d in GRAPH[m] if _in(d, FRONT + APPS))
        for m in GRAPH
        if not _in(m, FRONT + APPS) and m != "recursor"
    }
    assert {m: d for m, d in upward.items() if d} == {}
    from_apps = {m: sorted(d for d in GRAPH[m] if _in(d, FRONT)) for m in GRAPH if _in(m, APPS)}
    assert {m: d for m, d in from_apps.items() if d} == {}
