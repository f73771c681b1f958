"""Options shared by the ``recursor`` commands (``run``, ``bench``, ``replay``), declared once,
and how a ``--context`` value is read."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from recursor.errors import ContextError

Model = Annotated[
    str | None,
    typer.Option("--model", "-m", envvar="RECURSOR_MODEL", help="Root model, provider:model."),
]
SubModel = Annotated[
    str | None, typer.Option("--sub-model", help="Sub-model, provider:model (default: the root).")
]
Environment = Annotated[
    str, typer.Option("--environment", "-e", help="Sandbox: subprocess, bwrap, inprocess, ...")
]
MaxIterations = Annotated[int, typer.Option(min=1, help="Root turns at most.")]


def _read_directory(path: Path) -> dict[str, str]:
    """A directory's text files, with progress on a terminal and every skipped entry reported."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from recursor._terminal import markup_safe
    from recursor.context_dir import read_directory

    err = Console(stderr=True)
    with Progress(
        TextColumn("reading {task.description}"),
        BarColumn(bar_width=None),
        TextColumn("{task.fields[files]:,} files, {task.fields[mb]:.1f} MB"),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(markup_safe(str(path)), total=None, files=0, mb=0.0)
        read = read_directory(
            path, progress=lambda n, size: bar.update(task, files=n, mb=size / 2**20)
        )
    for skip in read.skipped:
        err.print(f"[yellow]skipped[/] {markup_safe(skip.path)}: {markup_safe(skip.reason)}")
    return read.docs


def load_context(spec: str | None) -> Any:
    """``-`` reads stdin; a directory becomes {relative path: text} (:mod:`recursor.context_dir`:
    never outside it); a file is passed by path."""
    if spec is None:
        return ""
    if spec == "-":
        return sys.stdin.buffer.read()
    path = Path(spec).expanduser()
    if path.is_dir():
        return _read_directory(path)
    if not path.is_file():
        raise ContextError(f"context path {spec!r} does not exist or is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ContextError(f"cannot read {spec!r}: {exc.strerror}") from exc
    return path
