"""The CLI's live view of a run: iterations, cells and sub-calls as they happen (on stderr)."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from recursor._terminal import markup_safe, plain
from recursor.trace import (
    BackgroundStarted,
    CellRan,
    CellStarted,
    Event,
    LimitHit,
    ModelCalled,
    ModelDelta,
    RunStarted,
    SubcallMade,
)

#: characters of the root's reply shown while it is generated
_TAIL_CHARS = 100

if TYPE_CHECKING:
    from recursor.rlm import RLMResult


class LiveView:
    """A trace sink that keeps counters and renders them while the run goes."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.root_id: str | None = None
        self.iterations = 0
        self.children = 0
        self.subcalls = 0
        self.subcall_errors = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self.last_code = ""
        self.last_limit = ""
        #: the end of the root's reply being generated (from the stream's token deltas)
        self.writing = ""
        self.background = 0
        self._live: Live | None = None

    def on_event(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, RunStarted):
                if self.root_id is None:
                    self.root_id = event.run_id
                else:
                    self.children += 1
            elif isinstance(event, ModelCalled):
                if event.run_id == self.root_id:
                    self.iterations = event.iteration
                self._add_usage(event.usage)
            elif isinstance(event, SubcallMade):
                self.subcalls += 1
                self.subcall_errors += event.error is not None
                self._add_usage(event.usage)
            elif isinstance(event, CellRan) and event.run_id == self.root_id:
                first = next((ln for ln in event.code.splitlines() if ln.strip()), "")
                self.last_code = first[:80]
            elif isinstance(event, LimitHit):
                self.last_limit = f"{event.limit}: {event.message}"
            else:
                self._on_live(event)

    def _on_live(self, event: Event) -> None:
        """Events only a stream carries: the root's reply as it is written, background calls."""
        if isinstance(event, ModelDelta) and event.run_id == self.root_id:
            self.writing = (self.writing + event.text)[-_TAIL_CHARS:]
        elif isinstance(event, CellStarted) and event.run_id == self.root_id:
            self.writing = ""  # the reply is complete; its cells run now
        elif isinstance(event, BackgroundStarted):
            self.background += len(event.handles)

    def _add_usage(self, usage: dict[str, object]) -> None:
        self.tokens_in += int(usage.get("input_tokens", 0) or 0)  # type: ignore[call-overload]
        self.tokens_out += int(usage.get("output_tokens", 0) or 0)  # type: ignore[call-overload]
        cost = usage.get("cost_usd")
        if isinstance(cost, int | float):
            self.cost += float(cost)

    def render(self) -> Group:
        with self._lock:
            table = Table.grid(padding=(0, 2))
            table.add_row("elapsed", f"{time.monotonic() - self._t0:6.1f} s")
            table.add_row("iterations", str(self.iterations))
            table.add_row("sub-calls", f"{self.subcalls} ({self.subcall_errors} failed)")
            table.add_row("child RLMs", str(self.children))
            table.add_row("tokens", f"{self.tokens_in:,} in / {self.tokens_out:,} out")
            table.add_row("cost", f"${self.cost:.4f}")
            if self.background:
                table.add_row("background", str(self.background))
            parts: list[Table | Text] = [table]
            if self.writing:
                last = self.writing.splitlines()[-1] if self.writing.strip() else ""
                parts.append(plain(f"model: {last[-80:]}", style="cyan"))
            if self.last_code:
                parts.append(plain(f"last cell: {self.last_code}", style="dim"))
            if self.last_limit:
                parts.append(plain(f"limit: {self.last_limit}", style="yellow"))
            return Group(*parts)

    def __enter__(self) -> LiveView:
        if self.enabled:
            self._live = Live(
                get_renderable=self.render, console=self.console, refresh_per_second=4
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def summary(self, result: RLMResult) -> None:
        u = result.usage.total
        cost = "unknown" if u.cost_usd is None else f"${u.cost_usd:.4f}"
        self.console.print(
            f"[dim]{markup_safe(result.stop_reason)} · {result.iterations} iterations · "
            f"{u.calls} model calls · "
            f"{u.input_tokens:,}+{u.output_tokens:,} tokens · cost {cost} · "
            f"{result.elapsed_s:.1f} s[/]"
        )
        if result.answer is None and result.error is not None:
            self.console.print(f"[bold red]no answer:[/] {markup_safe(str(result.error))}")
