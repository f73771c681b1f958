"""A live tree of the run in the terminal: runs → iterations → cells, sub-calls, child runs.

    sink = ConsoleSink()
    RLM(..., sinks=[sink]).completion(query, context=big)

On a terminal the tree redraws while the run goes (``rich.live``) and stays on screen when the
root run finishes; elsewhere (a log file, CI) it is printed once, at the end. Plain sub-calls
are folded into one line per iteration (``llm_query x128 · 3 failed``): a run with thousands
of them still fits a screen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text
from rich.tree import Tree

from recursor._terminal import visible
from recursor.trace.events import (
    CellRan,
    Event,
    LimitHit,
    ModelCalled,
    RunFinished,
    RunStarted,
    SubcallMade,
    ToolCalled,
)

_CODE_CHARS = 70
_TEXT_CHARS = 80


def _clip(text: str, n: int) -> str:
    """One line of at most about ``n`` characters, its control characters made visible (the
    text comes from the model, the context or the worker: no ESC sequence may reach the
    terminal; and every piece goes to rich as Text, never as markup)."""
    text = " ".join(text.split())
    return visible(text if len(text) <= n else text[: n - 1] + "…")


def _first_line(code: str) -> str:
    return next((ln.strip() for ln in code.splitlines() if ln.strip()), "")


def _secs(value: float | None) -> str:
    # None: a trace read back, where a non-finite number was written as null
    return "? s" if value is None else f"{value:.2f} s"


def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
    return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


@dataclass(slots=True)
class _Iteration:
    call: ModelCalled
    cells: list[CellRan] = field(default_factory=list)
    subcalls: int = 0
    failed: int = 0
    sub_in: int = 0
    sub_out: int = 0
    sub_models: set[str] = field(default_factory=set)
    children: list[str] = field(default_factory=list)
    #: calls of the caller's tools: by name, and how many failed
    tools: dict[str, int] = field(default_factory=dict)
    tools_failed: int = 0

    def count(self, event: SubcallMade | ToolCalled) -> None:
        if isinstance(event, ToolCalled):
            self.tools[event.name] = self.tools.get(event.name, 0) + 1
            self.tools_failed += event.error is not None
        elif event.child_run_id is None:  # a child run is drawn as a run of its own
            self.subcalls += 1
            self.failed += event.error is not None
            tin, tout = _tokens(event.usage)
            self.sub_in += tin
            self.sub_out += tout
            self.sub_models.add(event.model)


@dataclass(slots=True)
class _Run:
    started: RunStarted
    iterations: list[_Iteration] = field(default_factory=list)
    limits: list[LimitHit] = field(default_factory=list)
    finished: RunFinished | None = None
    #: children started before the first model call (never, today; kept for safety)
    children: list[str] = field(default_factory=list)


class ConsoleSink:
    """A trace sink drawing the run tree with rich; thread-safe."""

    def __init__(self, console: Console | None = None, *, live: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._roots: list[str] = []
        self._live: Live | None = None

    # -- the sink ---------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        root_done = False
        with self._lock:
            self._apply(event)
            root_done = isinstance(event, RunFinished) and event.run_id in self._roots
        if isinstance(event, RunStarted) and event.parent_id is None:
            self.start()
        if root_done:
            # Outside the lock: stopping Live renders one last time, which takes the lock.
            if self._live is not None:
                self.stop()
            elif not self.live:
                with self._lock:
                    tree = self._run_tree(self._runs[event.run_id])
                self.console.print(tree)

    def _apply(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._runs[event.run_id] = _Run(event)
            parent = self._runs.get(event.parent_id or "")
            if parent is None:
                self._roots.append(event.run_id)
            elif parent.iterations:
                parent.iterations[-1].children.append(event.run_id)
            else:
                parent.children.append(event.run_id)
            return
        run = self._runs.get(event.run_id)
        if run is None:
            return
        if isinstance(event, ModelCalled):
            run.iterations.append(_Iteration(event))
        elif isinstance(event, CellRan) and run.iterations:
            run.iterations[-1].cells.append(event)
        elif isinstance(event, SubcallMade | ToolCalled) and run.iterations:
            run.iterations[-1].count(event)
        elif isinstance(event, LimitHit):
            run.limits.append(event)
        elif isinstance(event, RunFinished):
            run.finished = event

    # -- drawing ----------------------------------------------------------------------------
    def render(self) -> Tree:
        """The tree as it stands (every root run under one node)."""
        with self._lock:
            if len(self._roots) == 1:
                return self._run_tree(self._runs[self._roots[0]])
            top = Tree(Text("recursor", style="bold"))
            for rid in self._roots:
                top.children.append(self._run_tree(self._runs[rid]))
            return top

    def _run_label(self, run: _Run) -> Text:
        s = run.started
        label = Text.assemble(
            ("run " if s.depth == 0 else "child run ", "bold"),
            (visible(s.run_id), "cyan"),
            (f" · depth {s.depth} · ", "dim"),
            _clip(s.query, _TEXT_CHARS),
        )
        done = run.finished
        if done is None:
            label.append("  running…", style="yellow")
        elif done.stop_reason == "final":
            label.append("  ✓ ", style="green")
            label.append(_clip(done.answer or "", _TEXT_CHARS), style="green")
        else:
            label.append(visible(f"  ✗ {done.stop_reason}"), style="bold red")
        return label

    def _run_tree(self, run: _Run) -> Tree:
        tree = Tree(self._run_label(run), guide_style="dim")
        for rid in run.children:
            tree.children.append(self._run_tree(self._runs[rid]))
        for it in run.iterations:
            self._iteration(tree, it)
        for hit in run.limits:
            tree.add(Text(visible(f"limit hit: {hit.limit} · {hit.message}"), style="bold red"))
        return tree

    def _iteration(self, tree: Tree, it: _Iteration) -> None:
        tin, tout = _tokens(it.call.usage)
        node = tree.add(
            Text.assemble(
                (f"iteration {it.call.iteration}", "bold"),
                (
                    visible(
                        f" · {it.call.model} · {tin:,}→{tout:,} tok · {_secs(it.call.latency_s)}"
                    ),
                    "dim",
                ),
            )
        )
        for cell in it.cells:
            line = Text.assemble(
                (f"cell {cell.index + 1}", "magenta"),
                (f" · {_secs(cell.duration_s)} · ", "dim"),
                _clip(_first_line(cell.code), _CODE_CHARS),
            )
            if cell.timed_out:
                line.append("  timed out", style="bold red")
            cell_node = node.add(line)
            if cell.error:
                last = cell.error.strip().splitlines()[-1] if cell.error.strip() else ""
                cell_node.add(Text(_clip(last, _TEXT_CHARS), style="red"))
            if cell.final is not None:
                cell_node.add(Text(f"FINAL {_clip(cell.final, _TEXT_CHARS)}", style="green"))
        if it.subcalls:
            failed = f" · {it.failed} failed" if it.failed else ""
            node.add(
                Text(
                    visible(
                        f"llm_query ×{it.subcalls} · {', '.join(sorted(it.sub_models))} · "
                        f"{it.sub_in:,}→{it.sub_out:,} tok{failed}"
                    ),
                    style="blue" if not it.failed else "yellow",
                )
            )
        if it.tools:
            calls = ", ".join(f"{name} ×{n}" for name, n in sorted(it.tools.items()))
            failed = f" · {it.tools_failed} failed" if it.tools_failed else ""
            style = "blue" if not it.tools_failed else "yellow"
            node.add(Text(visible(f"tools: {calls}{failed}"), style=style))
        for rid in it.children:
            child = self._runs.get(rid)
            if child is not None:
                node.children.append(self._run_tree(child))

    # -- live display ---------------------------------------------------------------------
    def start(self) -> None:
        """Start redrawing (called on the first root run; idempotent)."""
        if not self.live or self._live is not None:
            return
        self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=4)
        self._live.start()

    def stop(self) -> None:
        """Stop redrawing, leaving the last tree on screen."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def flush(self) -> None:
        """Push what was printed to the terminal (or file) now."""
        self.console.file.flush()

    def close(self) -> None:
        """Stop redrawing (idempotent); the last tree stays on screen."""
        self.stop()

    def __enter__(self) -> ConsoleSink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
