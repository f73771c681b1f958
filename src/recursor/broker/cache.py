"""The sub-call cache: identical (model, messages, parameters) calls are answered once.

Two layers: a dict for the run tree, and optionally a SQLite file (``RLM(cache=PATH)``) shared
across runs and processes (WAL mode, so readers never block the writer). Only successful
replies are stored. Identical calls *in flight* at the same time are made once: the later ones
await the first one's future (that part lives in the broker, on its loop).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time

from recursor.lm.base import LM, Message
from recursor.lm.profile import profile_of


def cache_key(lm: LM, messages: list[Message]) -> str:
    """sha256 over the model name, its cache parameters (its profile's) and the messages.

    The messages are fed field by field, length-prefixed, not through ``json.dumps``: escaping
    a 10 MB prompt costs ~60 ms, hashing it ~10 ms.
    """
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [lm.name, dict(profile_of(lm).cache_params)], sort_keys=True, default=str
        ).encode()
    )
    for message in messages:
        for field in sorted(message):
            for part in (field, str(message[field])):
                data = part.encode("utf-8", "surrogatepass")
                h.update(len(data).to_bytes(8, "big"))
                h.update(data)
        h.update(b"\x00")  # end of message
    return h.hexdigest()


class SubcallCache:
    """Replies by key; thread-safe. ``path``: also read and write a SQLite file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            db = sqlite3.connect(os.fspath(path), check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS subcalls "
                "(key TEXT PRIMARY KEY, model TEXT NOT NULL, reply TEXT NOT NULL, "
                "created REAL NOT NULL)"
            )
            db.commit()
            self._db = db

    def get(self, key: str) -> str | None:
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None or self._db is None:
                return hit
            row = self._db.execute("SELECT reply FROM subcalls WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            self._memory[key] = row[0]
            return str(row[0])

    def put(self, key: str, model: str, reply: str) -> None:
        with self._lock:
            self._memory[key] = reply
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO subcalls VALUES (?, ?, ?, ?)",
                    (key, model, reply, time.time()),
                )
                self._db.commit()

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()
