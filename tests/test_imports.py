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
#: above the core: programs that use it (CLI, benchmarks, trace apps, the demo)
FRONT = ("recursor.cli", "recursor._cli_options", "recursor.bench", "recursor.demo")
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


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


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
