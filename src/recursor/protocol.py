"""The text protocol between the root model and the REPL: parse replies, format observations.

Pure functions, no I/O. Code is taken from fences labelled ``repl``, ``python`` or ``py``.
A final answer is ``FINAL(...)`` / ``FINAL_VAR(...)`` at the start of a line of plain text
outside code (or a call inside code, handled by the REPL). Printed output is never parsed for
answers: only the model's own reply text is.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from dataclasses import dataclass
from typing import Literal

_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?P<lang>repl|python3?|py)[ \t]*\r?\n(?P<code>.*?)^[ \t]*```[ \t]*$",
    re.MULTILINE | re.DOTALL | re.IGNORECASE,
)
_OPEN_FENCE = re.compile(r"^[ \t]*```[ \t]*(repl|python3?|py)[ \t]*$", re.MULTILINE | re.IGNORECASE)
_FINAL_START = re.compile(r"^[ \t>*_`]*(?P<kind>FINAL_VAR|FINAL)[ \t]*\(", re.MULTILINE)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class FinalSignal:
    """A final answer written as plain text: a value, or the name of a REPL variable."""

    kind: Literal["value", "var"]
    text: str


@dataclass(frozen=True, slots=True)
class ParsedReply:
    code_blocks: list[str]
    final: FinalSignal | None
    #: a code fence was opened and never closed (a reply cut off by max_tokens, usually)
    unclosed_fence: bool = False
    #: the code after that unclosed fence (the engine runs it when the model stopped by itself)
    unclosed_code: str | None = None
    #: FINAL_VAR(...) named something that is not an identifier
    bad_final_var: str | None = None


def parse_reply(text: str) -> ParsedReply:
    """Code blocks in order, and the first final signal found in the text outside them."""
    blocks = [m.group("code") for m in _FENCE.finditer(text)]
    outside = _FENCE.sub("\n", text)
    opened = list(_OPEN_FENCE.finditer(outside))
    unclosed_code = outside[opened[-1].end() :].lstrip("\r\n") if opened else None
    if opened:
        outside = outside[: opened[-1].start()]
    final, bad = _find_final(outside)
    return ParsedReply(
        blocks,
        final,
        unclosed_fence=bool(opened),
        unclosed_code=unclosed_code or None,
        bad_final_var=bad,
    )


def _find_final(text: str) -> tuple[FinalSignal | None, str | None]:
    for m in _FINAL_START.finditer(text):
        inner = _balanced(text, m.end())
        if m.group("kind") == "FINAL":
            return FinalSignal("value", _literal_text(inner)), None
        name = inner.strip().strip("'\"` ").strip()
        if _IDENT.fullmatch(name):
            return FinalSignal("var", name), None
        return None, inner.strip()
    return None, None


def _balanced(text: str, start: int) -> str:
    """The text from ``start`` to the parenthesis that closes the one just before it.

    Quotes (single, double, triple) and backslash escapes are honoured so that parentheses
    inside string literals do not count. An unclosed call runs to the end of the text.
    """
    depth, i, n = 1, start, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and text[j : j + len(quote)] != quote:
                j += 2 if text[j] == "\\" else 1
            i = j + len(quote)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return text[start:]


def _literal_text(inner: str) -> str:
    """``FINAL("Paris")`` -> ``Paris``; ``FINAL(42)`` -> ``42``; ``FINAL(an answer)`` as written."""
    stripped = inner.strip()
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        # Not Python (a quoted string spanning lines, say): drop the quotes, keep the words.
        if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "\"'":
            q = stripped[0]
            return stripped[1:-1].replace("\\" + q, q)
        return stripped
    return value if isinstance(value, str) else str(value)


# -- truncation ----------------------------------------------------------------------------------


def cut_marker(cut: int) -> str:
    return f"\n[… {cut:,} characters cut …]\n"


class CappedText:
    """A write-only text stream that keeps only what it may ever show: a head and a tail.

    Model code can print gigabytes; we keep ``limit`` characters from each end and count the
    rest, so memory stays bounded and :meth:`render` can say exactly how much was cut.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0

    def write(self, s: str) -> int:
        n = len(s)
        self.total += n
        if self._head_len < self.limit:
            take = s[: self.limit - self._head_len]
            self._head.append(take)
            self._head_len += len(take)
            s = s[len(take) :]
        if s:
            self._tail.append(s)
            self._tail_len += len(s)
            while self._tail and self._tail_len - len(self._tail[0]) >= self.limit:
                self._tail_len -= len(self._tail.popleft())
        return n

    def flush(self) -> None:
        return None

    def render(self, budget: int | None = None) -> str:
        """At most ``budget`` (default ``limit``) characters: head, a cut marker, tail."""
        budget = self.limit if budget is None else min(budget, self.limit)
        head = "".join(self._head)
        if self.total <= budget:
            return head + "".join(self._tail)
        if budget <= 0:
            return ""
        whole_tail = (
            head[-self.limit :] + "".join(self._tail)
            if self._tail_len < self.limit
            else "".join(self._tail)
        )
        marker = cut_marker(self.total)
        keep = max(0, budget - len(marker))
        h = keep // 2
        t = keep - h
        marker = cut_marker(self.total - h - t)
        return head[:h] + marker + (whole_tail[-t:] if t else "")


def clip(text: str, budget: int) -> str:
    """``text`` cut to at most ``budget`` characters, head and tail kept."""
    buf = CappedText(max(budget, 0))
    buf.write(text)
    return buf.render()


def share(sizes: list[int], budget: int) -> list[int]:
    """Split ``budget`` over items of ``sizes``: small items keep all, big ones share the rest."""
    out = [0] * len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    left = max(budget, 0)
    for pos, i in enumerate(order):
        fair = left // (len(order) - pos)
        out[i] = min(sizes[i], fair)
        left -= out[i]
    return out
