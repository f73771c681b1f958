"""Model backends behind one Protocol, reached by ``provider:model`` strings."""

from recursor.lm.base import LM, ChatModel, Completion, LMProfile, Message, SyncLM
from recursor.lm.profile import default_profile, profile_of

__all__ = [
    "LM",
    "ChatModel",
    "Completion",
    "LMProfile",
    "Message",
    "SyncLM",
    "default_profile",
    "profile_of",
]
