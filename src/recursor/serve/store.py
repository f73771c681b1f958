"""Runs, their events and per-key daily usage, kept in SQLite under the server's data directory.

One connection, guarded by a lock (the server writes from its event loop; tests and the MCP
server may read from other threads). WAL mode with ``synchronous=NORMAL``: a commit is not
fsynced, so a power cut may lose the last events, but a killed server loses nothing it
committed, which is what the restart rule needs: when a store opens, every run that was still
``queued`` or ``running`` is marked ``interrupted`` (its process is gone), and finished runs
stay as they were.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recursor.trace.jsonl import dumps

#: states a run can be in; the first two are "in flight"
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    query TEXT NOT NULL,
    key_name TEXT,
    created REAL NOT NULL,
    finished REAL,
    answer TEXT,
    stop_reason TEXT,
    usage TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS usage_daily (
    key_name TEXT NOT NULL,
    day TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0,
    usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (key_name, day)
);
"""


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    profile: str
    kind: str
    state: str
    query: str
    key_name: str | None
    created: float
    finished: float | None
    answer: str | None
    stop_reason: str | None
    usage: dict[str, Any] | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "run",
            "model": self.profile,
            "kind": self.kind,
            "state": self.state,
            "query": self.query,
            "created": self.created,
            "finished": self.finished,
            "answer": self.answer,
            "stop_reason": self.stop_reason,
            "usage": self.usage,
            "error": self.error,
        }


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


class RunStore:
    """The SQLite file ``<data_dir>/runs.sqlite3``."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "runs.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        #: runs found in flight at open: their server died under them
        self.interrupted = self._mark_interrupted()

    def _mark_interrupted(self) -> int:
        with self._lock:
            cur = self._db.execute(
                "UPDATE runs SET state = 'interrupted', finished = ?, "
                "error = 'the server stopped while this run was in flight' "
                "WHERE state IN ('queued', 'running')",
                (time.time(),),
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- runs ---------------------------------------------------------------------------------
    def create(self, run_id: str, profile: str, kind: str, query: str, key: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, profile, kind, state, query, key_name, created) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (run_id, profile, kind, query, key, time.time()),
            )

    def set_state(self, run_id: str, state: str) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET state = ? WHERE id = ?", (state, run_id))

    def finish(  # noqa: PLR0913 - the columns a finished run sets
        self,
        run_id: str,
        state: str,
        *,
        answer: str | None = None,
        stop_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE runs SET state = ?, finished = ?, answer = ?, stop_reason = ?, "
                "usage = ?, error = ? WHERE id = ?",
                (
                    state,
                    time.time(),
                    answer,
                    stop_reason,
                    None if usage is None else dumps(usage),
                    error,
                    run_id,
                ),
            )

    def get(self, run_id: str) -> RunRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _row(row)

    def recent(self, limit: int = 100) -> list[RunRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_row(r) for r in rows]

    def count_by_state(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    # -- events -------------------------------------------------------------------------------
    def add_event(self, run_id: str, seq: int, event: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO events (run_id, seq, data) VALUES (?, ?, ?)",
                (run_id, seq, dumps(event, ensure_ascii=False)),
            )

    def events(self, run_id: str, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after),
            ).fetchall()
        return [(seq, json.loads(data)) for seq, data in rows]

    # -- budgets ------------------------------------------------------------------------------
    def spent_today(self, key_name: str) -> tuple[int, float]:
        with self._lock:
            row = self._db.execute(
                "SELECT tokens, usd FROM usage_daily WHERE key_name = ? AND day = ?",
                (key_name, today()),
            ).fetchone()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    def charge(self, key_name: str, tokens: int, usd: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO usage_daily (key_name, day, tokens, usd) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key_name, day) DO UPDATE SET "
                "tokens = tokens + excluded.tokens, usd = usd + excluded.usd",
                (key_name, today(), tokens, usd),
            )


def _row(row: tuple[Any, ...]) -> RunRow:
    (rid, profile, kind, state, query, key, created, finished, answer, stop, usage, error) = row
    return RunRow(
        id=rid,
        profile=profile,
        kind=kind,
        state=state,
        query=query,
        key_name=key,
        created=created,
        finished=finished,
        answer=answer,
        stop_reason=stop,
        usage=None if usage is None else json.loads(usage),
        error=error,
    )
