"""Text from a model, a context or a worker, made safe to show on a terminal.

Such text is untrusted: an ESC sequence in it could move the cursor, retitle the window or
(OSC 52) write the user's clipboard, and square brackets in it would be read by rich as markup
(``[link=...]`` becomes a live hyperlink, a stray ``[/bold]`` raises MarkupError). So before it
is printed, every C0/C1 control character but newline and tab is shown as a visible ``\\xNN``
escape, as are the bidirectional overrides that can make text read differently than it runs,
and it is handed to rich as a :class:`~rich.text.Text`, never as markup (or, where a message
mixes our own markup with such text, through :func:`markup_safe`).
"""

from __future__ import annotations

import re

from rich.markup import escape
from rich.text import Text

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _show(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with its control characters (newline and tab kept) written out visibly."""
    return _UNSAFE.sub(_show, text)


def plain(text: str, style: str = "") -> Text:
    """``text`` as rich renders it literally: controls made visible, brackets not markup."""
    return Text(visible(text), style=style)


def markup_safe(text: str) -> str:
    """``text`` to splice into a rich markup string: controls made visible, brackets escaped."""
    return escape(visible(text))
