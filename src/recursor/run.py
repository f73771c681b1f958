"""One completion, start to end: a :class:`~recursor.tree.Tree` for it, its root node driven
synchronously or on an event loop, and its result."""

from __future__ import annotations

from recursor._threads import in_daemon_thread
from recursor.context import ContextInput
from recursor.result import RLMResult
from recursor.tree import Tree, drive_async

__all__ = ["arun_tree", "run_tree"]


def run_tree(tree: Tree, query: str, context: ContextInput) -> RLMResult:
    """One completion in ``tree`` (made for it: its owner's configuration, its listener, its
    cancel scope, its typed answer), driven synchronously; the tree is closed after."""
    try:
        node = tree.node(query, context, depth=0, parent_id=None)
        outcome = node.run()
    finally:
        tree.close()
    return tree.result(node, outcome)


async def arun_tree(tree: Tree, query: str, context: ContextInput) -> RLMResult:
    """The same completion as :func:`run_tree`, awaiting model calls on the event loop."""
    try:
        node = tree.node(query, context, depth=0, parent_id=None)
        try:
            await in_daemon_thread(node.open)
            outcome = await drive_async(node)
        finally:
            await in_daemon_thread(node.close)
    finally:
        await in_daemon_thread(tree.close)
    return tree.result(node, outcome)
