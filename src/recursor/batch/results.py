"""``DIR/results.jsonl``: one line per finished item, appended as each ends, read back to resume.

The file is the batch's only state. A driver killed mid-write leaves a torn last line (no
newline): opening the file cuts it off, so the next line starts cleanly and that item simply
runs again. Lines are keyed by item id and the first one wins: an item that ran twice (a Ray
task retried after its node was lost, after it had finished) is written once.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
from pathlib import Path
from typing import IO, Any

from recursor.errors import ConfigurationError
from recursor.trace.jsonl import dumps

RESULTS = "results.jsonl"


def finite_cost(record: dict[str, Any]) -> float:
    """The record's cost in USD, 0 when unknown (unpriced models, failed items)."""
    cost = record.get("cost_usd")
    if isinstance(cost, int | float) and math.isfinite(cost):
        return float(cost)
    return 0.0


def _cut_torn_tail(path: Path) -> None:
    """Truncate ``path`` after its last newline (a line a killed writer left unfinished)."""
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # read back in blocks until the last newline; a file that is one torn line empties
        pos = size
        while pos > 0:
            step = min(1 << 16, pos)
            f.seek(pos - step)
            block = f.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                f.truncate(pos - step + cut + 1)
                return
            pos -= step
        f.truncate(0)


class ResultsFile:
    """The results of one batch directory: what is done, and an appender that writes each id
    once. Thread-safe (the driver's progress callbacks may come from other threads)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / RESULTS
        self.records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        try:  # two drivers on one directory would each run (and write) the same items
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise ConfigurationError(f"another batch is writing {self.path}") from None
        # locked before the torn tail is cut: never cut a line another driver is writing
        _cut_torn_tail(self.path)
        with self.path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # not ours to fix; the item runs again
                if isinstance(record, dict) and isinstance(record.get("id"), str):
                    self.records.setdefault(record["id"], record)

    def done(self, item_id: str) -> bool:
        return item_id in self.records

    def spent(self) -> float:
        return sum(finite_cost(r) for r in self.records.values())

    def add(self, record: dict[str, Any]) -> bool:
        """Append ``record`` unless its id is already written; whether it was written."""
        line = dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            if record["id"] in self.records:
                return False
            self.records[record["id"]] = record
            self._file.write(line)
            self._file.flush()  # a killed driver loses no finished item
            return True

    def close(self) -> None:
        with self._lock:
            self._file.close()
