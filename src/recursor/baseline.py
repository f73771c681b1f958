"""The one-call baselines the core needs: a direct answer over a context cut to the window, and
split-and-merge summarization. The router's ``direct`` route and the cost circuit breaker's
fallback run them; ``recursor bench``'s ``direct`` and ``summarize`` methods are the same code.

Windows are counted in estimated tokens at 3 characters a token (not the usual 4): digits and
code tokenize denser than prose, and a cut that overflows the real window fails the call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from recursor.lm.base import LM, Message
from recursor.usage import Usage

CHARS_PER_TOKEN = 3
#: tokens kept free for instructions, the question and the reply
RESERVE_TOKENS = 1024

ANSWER_SYSTEM = (
    "Answer the question using the context. Reply with the answer only: no explanation, "
    "no restating the question."
)

SUMMARY_SYSTEM = (
    "You summarize part of a long document for someone who must answer a question from the "
    "summaries alone. Keep every fact, name, number and count that could matter for the "
    "question; drop everything else. Be brief."
)


class Meter:
    """Calls models and adds up their usage; summaries run on a thread pool, hence the lock.
    ``on_call(model_name, usage)`` sees every call as it ends (a ledger's ``record``)."""

    def __init__(self, on_call: Callable[[str, Usage], None] | None = None) -> None:
        self.usage = Usage()
        self.calls = 0
        self._lock = threading.Lock()
        self._on_call = on_call

    def chat(self, lm: LM, messages: list[Message]) -> str:
        done = lm.complete(messages)
        with self._lock:
            self.usage += done.usage
            self.calls += 1
        if self._on_call is not None:
            self._on_call(lm.name, done.usage)
        return done.text.strip()

    def ask(self, lm: LM, system: str, user: str) -> str:
        return self.chat(
            lm, [{"role": "system", "content": system}, {"role": "user", "content": user}]
        )


def usable(window: int) -> int:
    """Tokens of a ``window`` left for material once instructions and the reply are set aside."""
    return window - min(RESERVE_TOKENS, window // 4)


def fit(text: str, tokens: int) -> str:
    """The head of ``text`` that fits in ``tokens`` (at :data:`CHARS_PER_TOKEN`)."""
    return text[: max(0, tokens) * CHARS_PER_TOKEN]


def chunks(text: str, tokens: int) -> list[str]:
    """``text`` cut into pieces of at most ``tokens``, at line or sentence ends where possible."""
    size = max(1, tokens) * CHARS_PER_TOKEN
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = max(text.rfind("\n", start, end), text.rfind(". ", start, end))
            if cut > start + size // 2:
                end = cut + 1
        out.append(text[start:end])
        start = end
    return out


def answer_prompt(query: str, material: str, what: str = "Context") -> str:
    return f"{what}:\n{material}\n\nQuestion: {query}\nAnswer:"


def direct_messages(query: str, text: str, window: int) -> list[Message]:
    """The one call of the direct baseline: the context's head that fits ``window``."""
    return [
        {"role": "system", "content": ANSWER_SYSTEM},
        {"role": "user", "content": answer_prompt(query, fit(text, usable(window)))},
    ]


def summarize_answer(  # noqa: PLR0913, PLR0917 - the baseline's knobs, all required
    meter: Meter,
    query: str,
    text: str,
    root: LM,
    sub: LM,
    windows: tuple[int, int],
    concurrency: int = 8,
) -> str:
    """Split-and-merge summarization: every sub-window chunk is summarized with the question in
    view by ``sub``, summaries are merged the same way until they fit the root's window, and
    ``root`` answers from them. ``windows``: (root's, sub's) input tokens."""
    answer_window, sub_window = usable(windows[0]), usable(windows[1])
    level = 0
    # split and merge until the summaries fit the root's window (at most 8 levels: each level
    # shrinks the text, and a sub-model that does not shrink it must not loop forever)
    while len(text) > answer_window * CHARS_PER_TOKEN and level < 8:
        parts = chunks(text, sub_window)

        def summarize(part: str, level: int = level) -> str:
            what = "Part of the document" if level == 0 else "Summaries of parts"
            return meter.ask(sub, SUMMARY_SYSTEM, f"Question: {query}\n\n{what}:\n{part}")

        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            summaries = list(pool.map(summarize, parts))
        text = "\n\n".join(f"[{i + 1}] {s}" for i, s in enumerate(summaries))
        level += 1
    return meter.ask(
        root, ANSWER_SYSTEM, answer_prompt(query, fit(text, answer_window), "Summaries")
    )
