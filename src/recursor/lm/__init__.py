"""Model backends behind one Protocol, reached by ``provider:model`` strings."""

from recursor.lm.base import LM, Completion, Message, SyncLM

__all__ = ["LM", "Completion", "Message", "SyncLM"]
