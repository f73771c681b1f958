"""Method names to methods: what ``recursor bench --methods`` and the runner look up.

Apart from :mod:`recursor.bench.methods` because the oracle method builds on that module; a
registry there would import the oracle back (an import circle).
"""

from __future__ import annotations

from collections.abc import Callable

from recursor.bench.methods import (
    BM25,
    Compaction,
    Direct,
    Method,
    RLMMethod,
    RoutedMethod,
    Summarize,
)
from recursor.bench.oracle import Oracle
from recursor.bench.peers import Rlms
from recursor.errors import ConfigurationError

METHODS: dict[str, Callable[[], Method]] = {
    "direct": Direct,
    "summarize": Summarize,
    "bm25": BM25,
    "compaction": Compaction,
    "rlm-d0": lambda: RLMMethod(0),
    "rlm-d1": lambda: RLMMethod(1),
    "rlm-d2": lambda: RLMMethod(2),
    # the prompt versions side by side (issue 17)
    "rlm-d1-v1": lambda: RLMMethod(1, "v1"),
    "rlm-d1-v2": lambda: RLMMethod(1, "v2"),
    "oracle": Oracle,
    "rlms": Rlms,
    "routed": RoutedMethod,
}


def method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigurationError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]()
