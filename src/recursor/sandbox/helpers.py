"""Helpers the REPL injects beside ``context``: ``grep``, ``chunks`` and ``llm_map``.

Small root models write the same three programs again and again, and get them subtly wrong
(``context.splitlines()`` on filler with no line breaks gives one "line" of 100,000 characters,
which the model then returns as its answer). These do those jobs boundedly, so the prompt can
teach one call instead of a loop; large models lose nothing by having them.

Pure functions of their arguments, apart from ``llm_map``'s use of the REPL's
``llm_query_batched`` (passed in, so this module knows nothing of the host).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

#: a hit's text beyond this many characters is narrowed to the sentence around the match
MAX_LINE_CHARS = 400
#: and that sentence to this many characters either side of the match
SIDE_CHARS = 200
#: hits returned at most (a pattern that matches everywhere is a pattern to refine)
MAX_HITS = 1000
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


class Hit(str):
    """One ``grep`` hit: the text of the line (or the sentence, in a long line) that matched.

    It is a ``str`` so that small models can split it or search it as they would a line;
    ``pos`` is the match's character offset in the searched text, and ``item`` the index (or
    key) of the list (or dict) entry it came from, None for a string.
    """

    pos: int
    item: int | str | None

    def __new__(cls, text: str, pos: int, item: int | str | None = None) -> Hit:
        hit = super().__new__(cls, text)
        hit.pos = pos
        hit.item = item
        return hit


def _compile(pattern: Any) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    text = str(pattern)
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error:
        # "what is bob's code (2)?" as a pattern: small models pass questions' words verbatim
        return re.compile(re.escape(text), re.IGNORECASE)


def _span(text: str, start: int, end: int, window: int) -> tuple[int, int]:
    """The bounds of the line holding text[start:end], plus ``window`` lines either side; a
    long line narrows to its sentence and at most SIDE_CHARS either side of the match."""
    lo = text.rfind("\n", 0, start) + 1
    for _ in range(window):
        if lo > 0:
            lo = text.rfind("\n", 0, lo - 1) + 1
    nl = text.find("\n", end)
    hi = len(text) if nl < 0 else nl
    for _ in range(window):
        if hi < len(text):
            nl = text.find("\n", hi + 1)
            hi = len(text) if nl < 0 else nl
    if hi - lo <= MAX_LINE_CHARS + (end - start):
        return lo, hi
    # a long "line" (filler without line breaks): the sentence, bounded
    s_lo = max(lo, start - SIDE_CHARS)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, s_lo, start)]
    if ends:
        s_lo = ends[-1]
    s_hi = min(hi, end + SIDE_CHARS)
    nxt = _SENTENCE_END.search(text, end, s_hi)
    if nxt:
        s_hi = nxt.end()
    return s_lo, s_hi


def _items(source: Any) -> Iterator[tuple[int | str | None, str]]:
    if isinstance(source, str):
        yield None, source
    elif isinstance(source, bytes):
        yield None, source.decode("utf-8", "replace")
    elif isinstance(source, Mapping):
        for key, value in source.items():
            yield str(key), str(value)
    elif isinstance(source, Iterable):
        for i, value in enumerate(source):
            yield i, str(value)
    else:
        yield None, str(source)


def grep(pattern: Any, source: Any, window: int = 0) -> list[Hit]:
    """The lines of ``source`` (a string, or each entry of a list or dict) matching ``pattern``.

    ``pattern`` is a regular expression, case-insensitive (a string that is not a valid one is
    searched literally). ``window`` adds that many lines before and after each hit. One hit per
    line (the first match in it); each at most about 2 x SIDE_CHARS characters around its match
    when the line is long.
    """
    rx = _compile(pattern)
    window = max(0, int(window))
    hits: list[Hit] = []
    for item, text in _items(source):
        last_hi = -1
        for m in rx.finditer(text):
            if m.start() < last_hi:
                continue  # this line is already a hit
            lo, hi = _span(text, m.start(), m.end(), window)
            hits.append(Hit(text[lo:hi].strip(), m.start(), item))
            last_hi = hi
            if len(hits) >= MAX_HITS:
                return hits
    return hits


def chunks(source: Any, size: int) -> list[Any]:
    """``source`` cut into pieces: a string into pieces of at most ``size`` characters (at a
    line or sentence end where one falls in the last fifth), a list or dict into lists of
    ``size`` entries."""
    size = int(size)
    if size < 1:
        raise ValueError("chunks(text, size): size must be at least 1")
    if isinstance(source, Mapping):
        source = [f"{k}: {v}" for k, v in source.items()]
    if not isinstance(source, str | bytes):
        items = list(source)
        return [items[i : i + size] for i in range(0, len(items), size)]
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            floor = start + size * 4 // 5
            cut = max(text.rfind("\n", floor, end), text.rfind(". ", floor, end))
            if cut > start:
                end = cut + 1
        out.append(text[start:end])
        start = end
    return out


def fill(template: str, item: Any) -> str:
    """The prompt for one item: ``{item}`` in the template replaced by it (no other brace is
    read, so a template may hold JSON), or the item appended when the template has no slot."""
    text = "\n".join(str(x) for x in item) if isinstance(item, list) else str(item)
    if "{item}" in template:
        return template.replace("{item}", text)
    return f"{template}\n\n{text}"


def make_llm_map(
    batched: Callable[[list[str]], list[str]],
) -> Callable[..., list[str]]:
    """``llm_map`` bound to the REPL's ``llm_query_batched``."""

    def llm_map(template: str, items: Any, batch: int = 16) -> list[str]:
        """One sub-model prompt per item (``template`` with ``{item}`` filled in), sent
        ``batch`` prompts per ``llm_query_batched`` call; the answers, stripped, in order."""
        prompts = [fill(str(template), item) for item in items]
        step = max(1, int(batch))
        answers: list[str] = []
        for i in range(0, len(prompts), step):
            answers.extend(a.strip() for a in batched(prompts[i : i + step]))
        return answers

    return llm_map
