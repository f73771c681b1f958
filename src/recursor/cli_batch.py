"""``recursor batch INPUT.jsonl --out DIR``: many items, a progress bar with ETA and spend,
resumable, on local worker processes or a Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from recursor import _cli_options as opt
from recursor._terminal import markup_safe
from recursor.errors import RecursorError

if TYPE_CHECKING:
    from recursor.batch.driver import BatchSummary
    from recursor.batch.executor import Executor, Outcome
    from recursor.batch.items import Item
    from recursor.batch.job import JobSpec

err = Console(stderr=True)

#: forwarded to Ray workers by default: where the models are, never a key (see --ray-env)
RAY_ENV_DEFAULT = ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "RECURSOR_MODEL", "RECURSOR_CACHE_DIR")


def _executor(workers: int, ray: str | None, ray_env: list[str]) -> Executor:
    from recursor.batch.executor import ProcessExecutor
    from recursor.batch.ray_executor import RayExecutor

    if ray is None:
        return ProcessExecutor(workers)
    names = [*RAY_ENV_DEFAULT, *ray_env]
    return RayExecutor(ray, env={k: os.environ[k] for k in names if k in os.environ})


def batch(  # noqa: PLR0913, PLR0917 - typer reads options from parameters
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT.jsonl", help="One item a line.", dir_okay=False)
    ],
    out: Annotated[Path, typer.Option(help="Results directory (resumes from it).")],
    model: opt.Model = None,
    sub_model: opt.SubModel = None,
    max_depth: Annotated[int, typer.Option(min=0)] = 1,
    environment: opt.Environment = "subprocess",
    max_iterations: opt.MaxIterations = 30,
    max_subcalls: Annotated[int | None, typer.Option(min=0)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=0, help="Per item.")] = None,
    item_max_cost: Annotated[float | None, typer.Option(min=0, help="USD per item.")] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(min=0, help="USD for the whole batch: no new item starts past it."),
    ] = None,
    timeout: Annotated[float | None, typer.Option(min=0, help="Seconds per item.")] = None,
    cell_timeout: Annotated[float, typer.Option(min=0, help="Seconds for one cell.")] = 60.0,
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes.")] = 1,
    ray: Annotated[
        str | None,
        typer.Option(help="Run on Ray: auto (RAY_ADDRESS or a local Ray) or a cluster address."),
    ] = None,
    ray_env: Annotated[
        list[str] | None, typer.Option(help="Also set this variable on Ray workers (repeat).")
    ] = None,
    context_root: Annotated[
        Path | None,
        typer.Option(help="context_path must lie inside this (default: INPUT's directory)."),
    ] = None,
    traces: Annotated[bool, typer.Option(help="Write each item's trace to DIR/traces.")] = True,
) -> None:
    """Run every line of INPUT.jsonl ({"id", "query", "context" | "context_path", "profile"?,
    "limits"?}) and append each result to DIR/results.jsonl as it ends.

    Exit code 0 when every item has a result, 1 when some were lost or left by --max-cost,
    3 when INPUT cannot be read, 4 for a configuration error (the directory is in use).
    """
    from recursor.batch.items import read_items
    from recursor.batch.job import JobSpec

    try:
        items, bad = read_items(input_path, context_root)
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot read {markup_safe(str(input_path))}: {exc.strerror}")
        raise typer.Exit(3) from None
    for line in bad:
        err.print(f"[yellow]skipped line {line.line}:[/] {markup_safe(line.reason)}")
    limits = {
        "max_iterations": max_iterations,
        "max_subcalls": max_subcalls,
        "max_tokens": max_tokens,
        "max_cost_usd": item_max_cost,
        "timeout_s": timeout,
        "cell_timeout_s": cell_timeout,
    }
    spec = JobSpec(
        model=model,
        sub_model=sub_model,
        max_depth=max_depth,
        environment=environment,
        limits=limits,
        trace_dir=str((out / "traces").resolve()) if traces else None,
    )
    try:
        executor = _executor(workers, ray, list(ray_env or []))
        summary = _run_with_progress(items, executor, out, spec, max_cost)
    except RecursorError as exc:  # a locked directory, Ray not installed
        err.print(f"[bold red]error:[/] {markup_safe(str(exc))}")
        raise typer.Exit(4) from None
    _print_summary(summary, len(bad), out)
    raise typer.Exit(0 if summary.failed == 0 and summary.not_started == 0 else 1)


def _run_with_progress(
    items: list[Item], executor: Executor, out: Path, spec: JobSpec, max_cost: float | None
) -> BatchSummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from recursor.batch.driver import run

    progress = Progress(
        TextColumn("[bold]batch[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("${task.fields[spent]:.4f}"),
        TextColumn("{task.description}"),
        console=err,
        disable=not err.is_terminal,
    )
    with progress:
        bar = progress.add_task("", total=len(items), spent=0.0)

        def on_result(
            record: dict[str, Any] | None, outcome: Outcome[Item, Any], summary: BatchSummary
        ) -> None:
            done = summary.skipped + summary.finished + summary.failed
            # ids and errors are the input's and the worker's text: shown escaped, never markup
            note = markup_safe(f"{outcome.arg.id}: {record['stop_reason'] if record else 'failed'}")
            progress.update(bar, completed=done, spent=summary.spent_usd, description=note)
            if not err.is_terminal:
                err.print(f"\\[{done}/{len(items)}] {note}", highlight=False)

        return run(items, executor, out=out, spec=spec, max_cost=max_cost, on_result=on_result)


def _print_summary(summary: BatchSummary, bad_lines: int, out: Path) -> None:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary.stop_reasons.items())) or "none"
    err.print(
        f"[bold]batch done[/] in {summary.elapsed_s:.1f}s: {summary.total} items, "
        f"{summary.finished} run now ({markup_safe(reasons)}), {summary.skipped} already done, "
        f"{summary.failed} failed, {bad_lines} bad lines; spent ${summary.spent_usd:.4f}",
        highlight=False,
    )
    if summary.not_started:
        err.print(
            f"[yellow]--max-cost reached:[/] {summary.not_started} items were not started "
            "(run again with a higher --max-cost to continue)"
        )
    for ident, error in summary.errors[:10]:
        err.print(f"[red]failed[/] {markup_safe(ident)}: {markup_safe(error)}")
    err.print(markup_safe(f"results: {out / 'results.jsonl'}"), highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(batch)
