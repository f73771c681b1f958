"""The trace commands of the CLI: ``replay``, ``view``, ``export-sft`` (their work is in
:mod:`recursor.apps`).

Kept out of :mod:`recursor.cli` so that file stays about running models; :func:`register`
adds them to the app (this module imports nothing of ``recursor.cli``: the CLI imports it).
Imports of the work itself happen inside each command, so ``recursor --help`` does not pay
for them.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from recursor._terminal import markup_safe

if TYPE_CHECKING:
    from recursor.apps.replay import CellDiff, ReplayReport

#: exit codes, matching recursor.cli.Exit where they overlap
_OK, _DIFFERS, _CONTEXT, _CONFIG = 0, 1, 3, 4
_DIFF_LINES = 24

TraceArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A trace (JSONL).")
]


def _diff(d: CellDiff) -> str:
    if d.field in ("missing", "extra"):
        return ""
    a = (d.recorded or "").splitlines()
    b = (d.replayed or "").splitlines()
    lines = list(difflib.unified_diff(a, b, "recorded", "replayed", lineterm="", n=1))
    if len(lines) > _DIFF_LINES:
        lines = [*lines[:_DIFF_LINES], f"… {len(lines) - _DIFF_LINES} more diff lines"]
    return "\n".join(lines)


def _print_report(out: Console, report: ReplayReport) -> None:
    status = "[green]same[/]" if report.ok else "[bold red]differs[/]"
    # Everything from the trace is model, context or worker text: markup_safe, so no ESC
    # sequence reaches the terminal and no "[link=...]" in it is read as markup.
    out.print(
        f"run [cyan]{markup_safe(report.run_id)}[/]: {report.runs} runs, "
        f"{report.cells} cells replayed, {len(report.diffs)} differ · {status}"
    )
    for d in report.diffs:
        first = next((ln for ln in d.code.splitlines() if ln.strip()), "")
        what = {"missing": "recorded but not replayed", "extra": "replayed but not recorded"}
        out.print(
            f"  [bold]run {markup_safe(d.run_id)} · depth {d.depth} · iteration {d.iteration} · "
            f"cell {d.index + 1}[/]: {markup_safe(what.get(d.field, d.field + ' differs'))}  "
            f"[dim]{markup_safe(first[:70])}[/]"
        )
        text = _diff(d)
        if text:
            out.print(markup_safe(text), highlight=False)
    if report.recorded_answer != report.replayed_answer:
        out.print(
            f"  [bold]answer differs[/]: recorded {markup_safe(repr(report.recorded_answer))}, "
            f"replayed {markup_safe(repr(report.replayed_answer))}",
            highlight=False,
        )
    if report.recorded_stop != report.replayed_stop:
        out.print(
            f"  [bold]stop reason differs[/]: {markup_safe(str(report.recorded_stop))} → "
            f"{markup_safe(str(report.replayed_stop))}"
        )
    if report.error:
        out.print(f"  [bold red]replay error:[/] {markup_safe(report.error)}")


def replay(
    trace: TraceArg,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            "-c",
            help="The root context (file, directory, or -), when the trace did not store it.",
        ),
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this root run.")] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Default: the recorded one.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Re-run TRACE on its recorded model replies (no model calls); report cells that differ.

    Exit status 1 when any cell, answer or stop reason differs; 3 when the context is missing.
    """
    from recursor._cli_options import load_context
    from recursor.apps.replay import replay as run_replay
    from recursor.errors import ConfigurationError, ContextError

    err = Console(stderr=True)
    try:
        ctx = None if context is None else load_context(context)
        reports = run_replay(trace, context=ctx, run_id=run_id, environment=environment)
    except ContextError as exc:
        err.print(f"[bold red]error:[/] {markup_safe(str(exc))}")
        raise typer.Exit(_CONTEXT) from None
    except ConfigurationError as exc:  # e.g. an unknown --environment
        err.print(f"[bold red]error:[/] {markup_safe(str(exc))}")
        raise typer.Exit(_CONFIG) from None
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {markup_safe(str(exc))}")
        raise typer.Exit(2) from None
    if json_out:
        print(json.dumps([r.to_dict() for r in reports], ensure_ascii=False))
    else:
        out = Console()
        for report in reports:
            _print_report(out, report)
    raise typer.Exit(_OK if all(r.ok for r in reports) else _DIFFERS)


def view(
    trace: TraceArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write (default: TRACE.html).")
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open/--no-open", help="Open it when a browser is there.")
    ] = True,
) -> None:
    """Write TRACE as one self-contained HTML page (works offline) and open it."""
    from recursor.apps.viewer import open_in_browser, write_html

    path = write_html(trace, out)
    opened = open_ and open_in_browser(path)
    Console(stderr=True).print(
        f"wrote {markup_safe(str(path))}" + (" (opened in a browser)" if opened else "")
    )
    print(path)


def export_sft(
    traces: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="Trace files (JSONL).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The JSONL file to write.")],
    only_final: Annotated[
        bool, typer.Option("--only-final", help="Only runs that ended with a final answer.")
    ] = False,
    max_turns: Annotated[
        int | None, typer.Option(min=1, help="Keep at most N assistant turns per record.")
    ] = None,
    depth: Annotated[
        int, typer.Option(min=0, help="Also child runs down to this depth (0: roots only).")
    ] = 0,
) -> None:
    """Write chat records from traces, for supervised fine-tuning of a root controller.

    One record per run: system, user, then assistant turns (with their code) and the
    observations that followed them as user turns.
    """
    from recursor.apps.sft import SFTOptions, export_sft

    n = export_sft(traces, out, SFTOptions(only_final=only_final, max_turns=max_turns, depth=depth))
    Console(stderr=True).print(
        f"wrote {n} record{'s' if n != 1 else ''} to {markup_safe(str(out))}"
    )


def register(app: typer.Typer) -> None:
    """Add the trace commands to the ``recursor`` app."""
    app.command()(replay)
    app.command()(view)
    app.command("export-sft")(export_sft)
