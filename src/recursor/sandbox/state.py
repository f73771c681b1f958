"""What the REPL reports about its namespace besides a cell's output: the final value as JSON,
and a cheap fingerprint of the variables (the cost circuit breaker's notion of progress).

Standard library only: the worker imports this inside sandboxes that have nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

#: elements of containers looked at per fingerprint, over the whole namespace: the fingerprint
#: runs after every cell, so it must stay cheap on a namespace holding a 10 MB context split
#: into a million pieces; a change past the sample (an element deep in a big list rewritten in
#: place) can go unseen, which costs the breaker one more turn, never a wrong answer
_SAMPLE = 2_000
_SKIP_TYPES = ("module", "function", "type", "builtin_function_or_method", "method")
_SCALARS = (str, bytes, int, float, bool, complex, type(None))
_CONTAINERS = (dict, list, tuple, set, frozenset)


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` default: dataclasses, pydantic models, sets and tuples as JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    dump = getattr(obj, "model_dump", None)  # a pydantic model, duck-typed (no pydantic here)
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def final_json(value: Any) -> str | None:
    """``value`` as JSON text, or None when JSON cannot carry it (the text ``str(value)`` is then
    all the host gets). Strings give None: their text is the answer as it is."""
    if isinstance(value, str):
        return None
    try:
        return json.dumps(value, default=_jsonable, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


class _Digest:
    def __init__(self) -> None:
        self.h = hashlib.blake2b(digest_size=12)
        self.budget = _SAMPLE

    def add(self, value: Any) -> None:
        # Exact built-in types only: a subclass or any other object could run model code here
        # (an ``__hash__``, ``items`` or ``__iter__`` of its own) after the cell's time is up,
        # where nothing interrupts it; other objects count by identity.
        self.budget -= 1
        h = self.h
        kind = type(value)
        h.update(kind.__name__.encode())
        if kind in _SCALARS:
            # hash() of a str is computed once and cached by CPython: cheap even for a context
            h.update(hash(value).to_bytes(8, "little", signed=True))
        elif self.budget <= 0 or kind not in _CONTAINERS:
            h.update(id(value).to_bytes(8, "little"))
        elif kind is dict:
            h.update(len(value).to_bytes(8, "little"))
            self._items(value.items())
        elif kind is list or kind is tuple:
            h.update(len(value).to_bytes(8, "little"))
            # the ends: where appends and the first results of a loop land
            self._items(value if len(value) <= 64 else [*value[:32], *value[-32:]])
        else:  # set, frozenset: the hashes their entries already store, no __hash__ called
            h.update(len(value).to_bytes(8, "little"))
            h.update(hash(frozenset(value)).to_bytes(8, "little", signed=True))

    def _items(self, items: Iterable[Any]) -> None:
        for item in items:
            if self.budget <= 0:
                return
            if isinstance(item, tuple):
                for part in item:
                    self.add(part)
            else:
                self.add(item)


def fingerprint(ns: Mapping[str, Any], skip: Iterable[str]) -> str:
    """A short digest of the user's variables: changes when one is added, removed, rebound or
    (within a bounded sample) changed in place."""
    hidden = set(skip)
    d = _Digest()
    for name in sorted(ns):
        if name.startswith("_") or name in hidden:
            continue
        value = ns[name]
        if type(value).__name__ in _SKIP_TYPES:
            continue
        d.h.update(name.encode())
        d.add(value)
    return d.h.hexdigest()
