"""Released routing policies: from held-out ``recursor bench`` records, per task family and per
complexity class, the cheapest route that clears every bar (mean score, p95 cost, p95 latency).

:func:`release` reads records (the runner's dicts: ``family``, ``method``, ``score``,
``cost_usd``, ``latency_s``, ...), keeps the methods that are routes (``direct``, ``rlm-d0``,
``rlm-d1``, ``rlm-d2``), and says of every candidate whether it was eligible and why not.
"Cheapest" is the lowest mean cost, then the fewest mean tokens (local models cost $0), then the
lowest p95 latency. A family counts for a complexity class through :data:`FAMILY_COMPLEXITY`.

A :class:`Policy` is what ``RLM(route="policy.json")`` applies: the question's class (one
classification call) picks the route; a class the policy has no route for falls back to the
``auto`` rule, and the result says so.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recursor.errors import ConfigurationError
from recursor.routing.choose import COMPLEXITIES, ROUTES, Choice, Complexity, route_of_method

POLICY_VERSION = 1

#: the information complexity of the generated (and loaded) bench families
FAMILY_COMPLEXITY: dict[str, Complexity] = {
    "sniah": "constant",
    "multihop": "constant",
    "oolong": "linear",
    "oolong_synth": "linear",
    "codeqa": "linear",
    "oolong_pairs": "quadratic",
}


@dataclass(frozen=True, slots=True)
class Bars:
    """What a route must clear to be released."""

    min_score: float = 0.9
    max_p95_cost_usd: float | None = None
    max_p95_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One route measured over one group (a family or a complexity class)."""

    method: str
    route: str
    depth: int | None
    n: int
    score: float
    p95_cost_usd: float | None
    p95_seconds: float
    cost_usd: float
    tokens: float
    #: why the route did not clear the bars; empty when it did
    failed: list[str] = field(default_factory=list)

    @property
    def eligible(self) -> bool:
        return not self.failed


@dataclass(frozen=True, slots=True)
class Decision:
    """The released route of one group (None: no route cleared every bar), and every
    candidate with its verdict."""

    group: str
    chosen: Candidate | None
    candidates: list[Candidate]


def p95(values: Sequence[float]) -> float:
    """The 95th percentile, linear between closest ranks (as ``recursor bench`` reports it)."""
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def _candidate(method: str, records: Sequence[Mapping[str, Any]], bars: Bars) -> Candidate:
    route = route_of_method(method)
    assert route is not None
    score = statistics.fmean(float(r.get("score") or 0.0) for r in records)
    priced = [float(r["cost_usd"]) for r in records if r.get("cost_usd") is not None]
    cost95 = p95(priced) if priced else None
    secs95 = p95([float(r.get("latency_s") or 0.0) for r in records])
    tokens = statistics.fmean(
        float((r.get("input_tokens") or 0) + (r.get("output_tokens") or 0)) for r in records
    )
    failed = []
    if score < bars.min_score:
        failed.append(f"score {score:.3f} < {bars.min_score}")
    if bars.max_p95_cost_usd is not None:
        if cost95 is None:
            failed.append("no priced runs, so p95 cost unknown")
        elif cost95 > bars.max_p95_cost_usd:
            failed.append(f"p95 cost ${cost95:.4f} > ${bars.max_p95_cost_usd}")
    if bars.max_p95_seconds is not None and secs95 > bars.max_p95_seconds:
        failed.append(f"p95 latency {secs95:.2f} s > {bars.max_p95_seconds} s")
    return Candidate(
        method=method,
        route=route[0],
        depth=route[1],
        n=len(records),
        score=score,
        p95_cost_usd=cost95,
        p95_seconds=secs95,
        cost_usd=statistics.fmean(priced) if priced else 0.0,
        tokens=tokens,
        failed=failed,
    )


def _decide(group: str, records: Sequence[Mapping[str, Any]], bars: Bars) -> Decision:
    by_method: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if route_of_method(str(r.get("method"))) is not None:
            by_method[str(r["method"])].append(r)
    candidates = [_candidate(m, rs, bars) for m, rs in sorted(by_method.items())]
    eligible = [c for c in candidates if c.eligible]
    chosen = min(eligible, key=lambda c: (c.cost_usd, c.tokens, c.p95_seconds), default=None)
    return Decision(group, chosen, candidates)


@dataclass(frozen=True, slots=True)
class Policy:
    """Released routes by complexity class and by family (``{"route": ..., "depth": ...}``)."""

    classes: dict[str, dict[str, Any]]
    families: dict[str, dict[str, Any]]
    bars: dict[str, Any]
    version: int = POLICY_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    def choice(self, complexity: Complexity) -> Choice | None:
        entry = self.classes.get(complexity)
        if entry is None:
            return None
        return Choice(
            entry["route"],
            entry.get("depth"),
            f"the released policy's route for {complexity} questions "
            f"(score {entry['score']:.2f} over {entry['n']} held-out runs)",
        )


def release(records: Iterable[Mapping[str, Any]], bars: Bars) -> tuple[Policy, list[Decision]]:
    """The policy the records support under ``bars``, and the decision of every group."""
    rows = list(records)
    decisions: list[Decision] = []
    families: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    classes: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        family = str(r.get("family"))
        families[family].append(r)
        if family in FAMILY_COMPLEXITY:
            classes[FAMILY_COMPLEXITY[family]].append(r)
    out: dict[str, dict[str, dict[str, Any]]] = {"classes": {}, "families": {}}
    for kind, groups, prefix in (("classes", classes, "class"), ("families", families, "family")):
        for name in sorted(groups):
            d = _decide(f"{prefix} {name}", groups[name], bars)
            decisions.append(d)
            if d.chosen is not None:
                out[kind][name] = {
                    "route": d.chosen.route,
                    "depth": d.chosen.depth,
                    "method": d.chosen.method,
                    "score": d.chosen.score,
                    "n": d.chosen.n,
                }
    return Policy(out["classes"], out["families"], asdict(bars)), decisions


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """A policy file written by ``recursor route release``, checked."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"route policy {os.fspath(path)!r}: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != POLICY_VERSION:
        raise ConfigurationError(f"route policy {os.fspath(path)!r}: not a version 1 policy")
    classes = data.get("classes") or {}
    for name, entry in classes.items():
        if name not in COMPLEXITIES or not isinstance(entry, dict):
            raise ConfigurationError(f"route policy: unknown complexity class {name!r}")
        if entry.get("route") not in ROUTES:
            raise ConfigurationError(f"route policy: unknown route {entry.get('route')!r}")
        for key in ("score", "n"):
            if not isinstance(entry.get(key), int | float):
                raise ConfigurationError(f"route policy: class {name!r} lacks {key!r}")
    return Policy(classes, dict(data.get("families") or {}), dict(data.get("bars") or {}))
