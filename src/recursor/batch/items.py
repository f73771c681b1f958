"""The batch input: one JSON object a line, read into :class:`Item` s; bad lines are reported.

A line is ``{"id", "query", "context" | "context_path", "profile"?, "limits"?}``:

* ``id``: a string (or integer) unique in the file; a repeated id is a bad line;
* ``context``: the text itself (any JSON value a completion accepts as context), or
  ``context_path``: a file or directory *inside the context root* (by default the input file's
  directory). The input is often written by someone else, so a path is hostile like any other:
  it is checked here on its spelling (no absolute path or ``..`` out of the root) and again on
  the node that reads it, after symlinks are resolved (:func:`recursor.batch.job.read_context`);
* ``profile``: per-item model settings overriding the batch's: ``model``, ``sub_model``,
  ``max_depth``;
* ``limits``: per-item :class:`recursor.Limits` fields (``max_iterations``, ``max_cost_usd``,
  ``timeout_s``, ...), over the batch's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recursor.errors import ConfigurationError
from recursor.limits import Limits

#: the per-item model settings a ``profile`` may carry
PROFILE_KEYS = frozenset({"model", "sub_model", "max_depth"})
LIMIT_KEYS = frozenset(f.name for f in dataclasses.fields(Limits))
_KEYS = frozenset({"id", "query", "context", "context_path", "profile", "limits"})
#: longest id kept: ids name result lines and trace files
MAX_ID_CHARS = 200


@dataclass(frozen=True)
class Item:
    """One question of a batch. Picklable: it travels to worker processes and Ray nodes."""

    id: str
    query: str
    context: Any = ""
    #: absolute path of a file or directory inside ``context_root`` (read on the node)
    context_path: str | None = None
    context_root: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BadLine:
    """A line that was skipped, and why (``line`` counts from 1)."""

    line: int
    reason: str


class ItemError(ValueError):
    """Why one input line is not an item (caught per line: it never ends the batch)."""


def inside_root(spec: str, root: Path) -> str:
    """``spec`` as an absolute path under ``root``, judged on its spelling only (symlinks are
    resolved on the node that reads it); :class:`ItemError` when it names anything outside."""
    if "\x00" in spec:
        raise ItemError("context_path contains a NUL byte")
    base = os.path.abspath(root)
    full = os.path.normpath(os.path.join(base, spec))
    if full != base and not full.startswith(base.rstrip(os.sep) + os.sep):
        raise ItemError(f"context_path {spec!r} is outside the context root {base}")
    return full


def parse_item(raw: str, root: Path) -> Item:
    """One line to an :class:`Item`, or :class:`ItemError` saying what is wrong with it."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ItemError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise ItemError("not a JSON object")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise ItemError(f"unknown keys: {', '.join(unknown)}")
    ident = _item_id(obj.get("id"))
    query = obj.get("query")
    if not isinstance(query, str) or not query:
        raise ItemError('"query" must be a non-empty string')
    if "context" in obj and "context_path" in obj:
        raise ItemError('give "context" or "context_path", not both')
    path: str | None = None
    if "context_path" in obj:
        if not isinstance(obj["context_path"], str) or not obj["context_path"]:
            raise ItemError('"context_path" must be a non-empty string')
        path = inside_root(obj["context_path"], root)
    profile, limits = _overrides(obj)
    return Item(
        id=ident,
        query=query,
        context=obj.get("context", ""),
        context_path=path,
        context_root=os.path.abspath(root) if path is not None else None,
        profile=profile,
        limits=limits,
    )


def _item_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise ItemError('"id" must be a non-empty string or an integer')
    if len(str(value)) > MAX_ID_CHARS:
        raise ItemError(f'"id" is longer than {MAX_ID_CHARS} characters')
    return str(value)


def _overrides(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The line's ``profile`` and ``limits``, checked."""
    profile = obj.get("profile") or {}
    if not isinstance(profile, dict) or set(profile) - PROFILE_KEYS:
        raise ItemError(f'"profile" must be an object with keys among {sorted(PROFILE_KEYS)}')
    limits = obj.get("limits") or {}
    if not isinstance(limits, dict) or set(limits) - LIMIT_KEYS:
        raise ItemError(f'"limits" must be an object with keys among {sorted(LIMIT_KEYS)}')
    try:
        Limits(**limits)  # a bad value is this line's error, not a crash on the node
    except (TypeError, ValueError, ConfigurationError) as exc:
        raise ItemError(f'bad "limits": {exc}') from None
    return dict(profile), dict(limits)


def parse_lines(lines: Iterable[str], root: Path) -> Iterator[Item | BadLine]:
    """Items in input order, a :class:`BadLine` in place of each line that is not one."""
    seen: set[str] = set()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            item = parse_item(raw, root)
        except ItemError as exc:
            yield BadLine(number, str(exc))
            continue
        if item.id in seen:
            yield BadLine(number, f"id {item.id!r} repeats an earlier line")
            continue
        seen.add(item.id)
        yield item


def read_items(
    path: str | Path, root: str | Path | None = None
) -> tuple[list[Item], list[BadLine]]:
    """The items of a JSONL file and its bad lines; ``root`` defaults to the file's directory."""
    source = Path(path)
    base = Path(root) if root is not None else source.resolve().parent
    items: list[Item] = []
    bad: list[BadLine] = []
    with source.open(encoding="utf-8", errors="replace") as f:
        for entry in parse_lines(f, base):
            (items if isinstance(entry, Item) else bad).append(entry)  # type: ignore[arg-type]
    return items, bad
