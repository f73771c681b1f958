"""Long-context benchmarks: the paper's task families with exact gold answers, the baselines, and
the method-by-family-by-length matrix.

    from recursor.bench import generate
    tasks = generate("oolong", n=5, length=32_000, seed=0)
    tasks[0].score("12")

Families (``generate``): ``sniah``, ``oolong``, ``oolong_pairs``, ``codeqa``, ``multihop``.
Official formats load from local files (:mod:`recursor.bench.loaders`). Methods, by name in
:mod:`recursor.bench.registry`: direct, summarize, bm25, compaction, rlm-d0/d1/d2
(:mod:`recursor.bench.methods`) and oracle (:mod:`recursor.bench.oracle`).
The runner and report are :mod:`recursor.bench.runner` and :mod:`recursor.bench.report`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from recursor.bench.task import Task, render
from recursor.errors import ConfigurationError

__all__ = ["FAMILIES", "Task", "generate", "render"]


def _families() -> dict[str, Callable[[random.Random, int, int], Task]]:
    from recursor.bench import gen_codeqa, gen_oolong, gen_text

    return {
        "sniah": gen_text.sniah,
        "oolong": gen_oolong.oolong,
        "oolong_pairs": gen_oolong.oolong_pairs,
        "codeqa": gen_codeqa.codeqa,
        "multihop": gen_text.multihop,
    }


FAMILIES = ("sniah", "oolong", "oolong_pairs", "codeqa", "multihop")


def generate(family: str, n: int = 10, length: int = 8_000, seed: int = 0) -> list[Task]:
    """``n`` tasks of ``family`` with contexts of about ``length`` tokens (4 characters each).

    Deterministic: the same arguments give the same tasks on every machine (each task draws
    from its own generator seeded by family, length, seed and index).
    """
    makers = _families()
    if family not in makers:
        raise ConfigurationError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if n < 0 or length < 1:
        raise ConfigurationError("n must be >= 0 and length >= 1")
    make = makers[family]
    return [make(random.Random(f"{family}:{length}:{seed}:{i}"), i, length) for i in range(n)]
