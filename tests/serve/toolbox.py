"""A Python tool a test profile names as ``tests.serve.toolbox:shout``."""

from __future__ import annotations


def shout(text: str) -> str:
    """Upper-case ``text`` with an exclamation mark."""
    return text.upper() + "!"
