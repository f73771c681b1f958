"""``recursor bench``: the method-by-family-by-length matrix, with progress, resume and reports."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from recursor import _cli_options as opt
from recursor._terminal import markup_safe
from recursor.errors import RecursorError

if TYPE_CHECKING:
    from recursor.batch.executor import Executor

err = Console(stderr=True)

#: official-format loaders, by the family name they produce (``--load NAME=PATH``)
_LOADERS = ("oolong_synth", "longbench_v2", "browsecomp_plus")


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _load(spec: str, n: int) -> list[Any]:
    from recursor.bench import loaders

    name, sep, path = spec.partition("=")
    if not sep or name not in _LOADERS:
        raise typer.BadParameter(f"--load wants NAME=PATH with NAME one of {', '.join(_LOADERS)}")
    fn = getattr(loaders, f"load_{name}")
    return list(fn(path, limit=n))


def bench(  # noqa: PLR0917 - typer reads options from parameters
    families: Annotated[
        str, typer.Option(help="Comma-separated: sniah, oolong, oolong_pairs, codeqa, multihop.")
    ] = "sniah,oolong",
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated: direct, summarize, bm25, compaction, rlm-d0, rlm-d1, rlm-d2, "
            "routed, rlm-d1-v1, rlm-d1-v2 (pinned prompt versions), oracle, rlms (the official "
            "package; recursor[peers])."
        ),
    ] = "direct,rlm-d1",
    model: opt.Model = None,
    sub_model: opt.SubModel = None,
    n: Annotated[int, typer.Option(min=1, help="Tasks per (family, length).")] = 5,
    lengths: Annotated[
        str, typer.Option(help="Comma-separated context lengths in tokens (4 chars each).")
    ] = "8000,32000",
    seed: Annotated[int, typer.Option(help="Task generation seed.")] = 0,
    heldout: Annotated[
        bool,
        typer.Option(
            help="Reword every question with held-out templates (sniah, multihop, oolong); "
            "use a new --seed and its own --out."
        ),
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 4,
    subcall_concurrency: Annotated[
        int, typer.Option(min=1, help="Sub-calls at once within one job.")
    ] = 8,
    window: Annotated[
        int | None,
        typer.Option(min=256, help="Input tokens the models accept (default: as the model says)."),
    ] = None,
    environment: opt.Environment = "subprocess",
    max_iterations: opt.MaxIterations = 20,
    timeout: Annotated[float | None, typer.Option(min=0, help="Seconds per RLM task.")] = None,
    cell_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds for one REPL cell of an RLM.")
    ] = 60.0,
    load: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PATH: also run an official dataset from local files "
            f"({', '.join(_LOADERS)}); --n caps its tasks."
        ),
    ] = None,
    traces: Annotated[
        Path | None,
        typer.Option(help="Also write each RLM run's JSONL trace into this directory."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Results directory (resumes from it).")] = Path(
        "bench-results"
    ),
    base_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible endpoint of an openai:MODEL root, for every method and rlms "
            "(default: rlms reaches the root model through a loopback bridge)."
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(help="Run the matrix's jobs as Ray tasks: auto or a cluster address."),
    ] = None,
) -> None:
    """Run METHODS over generated FAMILIES at LENGTHS; write results.json, results.md, plots."""
    from recursor.bench import generate
    from recursor.bench.methods import Models
    from recursor.bench.peers import endpoint_for
    from recursor.bench.report import write_report
    from recursor.bench.runner import Record, run_matrix
    from recursor.limits import Limits
    from recursor.lm.registry import DEFAULT_MODEL, resolve_lm

    method_names = _split(methods)
    length_list = [int(x) for x in _split(lengths)]
    if base_url is not None:
        os.environ["OPENAI_BASE_URL"] = base_url  # how the openai backend finds its server
    try:
        root = resolve_lm(model or DEFAULT_MODEL)
        sub = root if sub_model is None else resolve_lm(sub_model)
        # round-robin over (family, length), so a run cut short has every cell partly done
        groups = [generate(f, n, L, seed) for f in _split(families) for L in length_list]
        tasks = [group[i] for i in range(n) for group in groups]
        if heldout:
            from recursor.bench.heldout import reword

            tasks = [reword(t, seed) for t in tasks]
        for spec in load or []:
            tasks += _load(spec, n)
        models = Models(
            root=root,
            sub=sub,
            window_tokens=window,
            environment=environment,
            limits=Limits(
                max_iterations=max_iterations, timeout_s=timeout, cell_timeout_s=cell_timeout
            ),
            concurrency=subcall_concurrency,
            endpoint=None if base_url is None else endpoint_for(root.name, base_url),
            trace_dir=traces,
        )
        progress = Progress(
            TextColumn("[bold]bench[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=err,
            disable=not err.is_terminal,
        )
        with progress:
            bar = progress.add_task("", total=len(tasks) * len(method_names))

            def on_record(record: Record, done: int, total: int) -> None:
                note = f"{record['method']} {record['task_id']}: {record['score']:.2f}"
                progress.update(bar, completed=done, description=markup_safe(note))
                if not err.is_terminal:
                    err.print(f"\\[{done}/{total}] {markup_safe(note)}", highlight=False)

            records = run_matrix(
                tasks,
                method_names,
                models,
                out,
                concurrency=concurrency,
                on_record=on_record,
                executor=None if ray is None else ray_executor(ray),
            )
    except RecursorError as exc:
        err.print(f"[bold red]error:[/] {markup_safe(str(exc))}")
        raise typer.Exit(4) from None
    config = {
        "families": _split(families),
        "methods": method_names,
        "model": root.name,
        "sub_model": sub.name,
        "n": n,
        "lengths": length_list,
        "seed": seed,
        "heldout": heldout,
        "window_tokens": window,
        "environment": environment,
        "max_iterations": max_iterations,
        "timeout_s": timeout,
        "cell_timeout_s": cell_timeout,
        "concurrency": concurrency,
        "loaded": list(load or []),
        "base_url": base_url,
        "ray": ray,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    paths = write_report(out, records, config)
    print((out / "results.md").read_text() if (out / "results.md").exists() else "")
    for name, path in paths.items():
        err.print(markup_safe(f"{name}: {path}"), highlight=False)


def ray_executor(address: str) -> Executor:
    from recursor.batch.ray_executor import RayExecutor

    names = ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "RECURSOR_CACHE_DIR")
    return RayExecutor(address, env={k: os.environ[k] for k in names if k in os.environ})


def register(app: typer.Typer) -> None:
    app.command()(bench)
