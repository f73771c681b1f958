"""One record per item of a sub-call batch: what it answered or why it failed, and its cost.

Each item's coroutine fills its own :class:`ItemResult`; the batch reads the records once every
item is done, and turns them into the wire's :class:`~recursor.sandbox.base.SubcallResponse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recursor._cancel import Cancel
from recursor.errors import SubcallError
from recursor.usage import Usage


@dataclass(slots=True)
class ItemResult:
    """The outcome of one item: ``reply`` or ``error`` (with ``error_type``, a class name of
    :mod:`recursor.errors`), what it used, and how it got there."""

    reply: str | None = None
    error: str | None = None
    error_type: str | None = None
    usage: Usage = field(default_factory=Usage)
    #: answered from the cache, or by an identical call in flight
    cached: bool = False
    #: model calls made for it (retries included; 1 for a child run)
    attempts: int = 0
    #: stopped before it got to its model or child run: its ``max_subcalls`` share is returned
    cancelled_unstarted: bool = False

    @property
    def started(self) -> bool:
        """Whether it got as far as its model (or the cache)."""
        return self.attempts > 0 or self.cached

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error is not None

    def fail(self, message: str, error_type: str) -> None:
        self.reply, self.error, self.error_type = None, message, error_type


class ItemError(Exception):
    """Ends one item with an error the model is shown (the rest of the batch goes on)."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class ItemCancelled(ItemError):
    """The item's cell or run was stopped before the item got to its model or child run."""

    def __init__(self, cancel: Cancel) -> None:
        super().__init__(f"cancelled: {cancel.reason}", SubcallError.__name__)
