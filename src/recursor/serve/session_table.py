"""The server's open conversations (``/v1/sessions``, :mod:`recursor.serve.sessions`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recursor.conversation import Conversation
from recursor.rlm import RLM
from recursor.serve.config import ApiKey


@dataclass(slots=True)
class OpenSession:
    id: str
    profile: str
    key: str | None
    rlm: RLM
    conv: Conversation

    def info(self) -> dict[str, Any]:
        c = self.conv
        return {
            "id": self.id,
            "object": "session",
            "model": self.profile,
            "closed": c.closed,
            "contexts": c.contexts,
            "asks": [{"query": h.get("question"), "answer": h.get("answer")} for h in c.history],
            "usage": c.usage.to_dict(),
        }

    def close(self) -> None:
        try:
            self.conv.close()
        finally:
            self.rlm.close()


class SessionTable:
    """The server's open conversations, by id; closed with the server."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, OpenSession] = {}

    def get(self, sid: str, key: ApiKey | None) -> OpenSession | None:
        found = self.open.get(sid)
        if found is not None and found.conv.closed:  # the idle timeout closed it
            self.open.pop(sid, None)
            found.rlm.close()
            found = None
        if found is None or found.key != (None if key is None else key.name):
            return None  # another key's session is not there for this one
        return found

    def close_all(self) -> None:
        for s in list(self.open.values()):
            s.close()
        self.open.clear()
