"""Which worked example a run's prompt gets, from its question: ``classify(question) -> kind``.

A small root copies the example it is shown, so the example must be the program the question
needs; showing all four would double the prompt a CPU model reads at every turn. The kinds:

* ``lookup``: one fact under a key ("What is the PIN of bob?"): grep, print, take the value;
* ``chain``: a fact found is the key of the next search ("the company that employs X");
* ``read``: the answer needs understanding passages (why, how, explain, summarize): gather
  them, hand them to ``llm_query``, check its answer against the text;
* ``count``: a judgement over many items, aggregated (how many, most common, more than):
  label every item with ``llm_map`` in batches, count in code.

A cheap classification by the question's words, deliberately: it costs nothing, runs before the
first model call, and is wrong only toward a less helpful example, never a broken run. The
routing issue's complexity estimate may replace it behind the same function.
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["lookup", "chain", "read", "count"]
KINDS: tuple[Kind, ...] = ("lookup", "chain", "read", "count")

_COUNT = re.compile(
    r"\bhow many\b|\bhow often\b|\bcount\b|\bnumber of (?!the\b)|\b(most|least) (common|frequent)"
    r"|\bmore common\b|\bless common\b|\bfrequen|\bproportion\b|\bpercentage\b|\bin total\b",
    re.I,
)
_READ = re.compile(
    r"^\s*(why|how (does|do|did|is|are|was|were|can|could|would|should))\b|\bexplain\b"
    r"|\bsummar|\bdescribe\b|\bmain (point|idea|theme|argument)|\bwhat happened\b"
    r"|\bwhat (does|did) .{1,60} (say|think|mean|argue|claim)\b",
    re.I,
)
#: a relative clause or a possessive chain: the question names its target through another fact
_CHAIN = re.compile(
    r"\b(the|a|an|its|their|whose) (\w+ ){0,2}\w+ (that|which|who|whom|whose|where)\b"
    r"|\b\w+'s \w+'s\b|\b(of|for) the \w+ (of|that|who|which|whose)\b"
    r"|\b(employer|manager|owner|parent|founder|supplier|author)s? of\b"
    r"|\b(works|worked|is employed|lives|belongs) (for|at|to|in)\b",
    re.I,
)


def classify(question: str) -> Kind:
    """The kind of program ``question`` needs (see the module docstring)."""
    if _COUNT.search(question):
        return "count"
    if _CHAIN.search(question):
        return "chain"
    if _READ.search(question):
        return "read"
    return "lookup"
