"""Conversations: ``rlm.session(context=...)`` keeps one REPL across asks; ``save`` and
``rlm.resume`` carry it over a restart without a model call."""

from recursor.conversation.core import Conversation, resume
from recursor.conversation.resume import ResumeReport

#: the name the issue and the docs use; ``Session`` is the sandbox's REPL protocol
ConversationSession = Conversation

__all__ = ["Conversation", "ConversationSession", "ResumeReport", "resume"]
