"""Options shared by the ``recursor`` commands (``run``, ``bench``, ``replay``), declared once,
and how a ``--context`` value is read."""

from __future__ import annotations

import os
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

#: directory contexts skip these, and files larger than this
_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv"}
_MAX_FILE = 20 * 2**20


def load_context(spec: str | None) -> Any:
    """``-`` reads stdin; a directory becomes {relative path: text}; a file is passed by path."""
    if spec is None:
        return ""
    if spec == "-":
        return sys.stdin.buffer.read()
    path = Path(spec).expanduser()
    if path.is_dir():
        docs: dict[str, str] = {}
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
            for name in sorted(files):
                f = Path(root) / name
                if name.startswith(".") or f.stat().st_size > _MAX_FILE:
                    continue
                data = f.read_bytes()
                if b"\0" in data[:8192]:
                    continue  # binary
                docs[str(f.relative_to(path))] = data.decode("utf-8", "replace")
        return docs
    if not path.is_file():
        raise ContextError(f"context path {spec!r} does not exist or is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ContextError(f"cannot read {spec!r}: {exc.strerror}") from exc
    return path
