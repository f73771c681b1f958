"""Benchmark report: run records → per-cell aggregates → JSON, Markdown and two PNG plots.

A *record* is the runner's dict for one (task, method) run (``family``, ``length``, ``method``,
``score``, ``cost_usd``, ``latency_s``, ``error``, ...). A :class:`Cell` aggregates the records
of one (family, length, method). Conventions, stated once:

* A failed run (``error`` is not None) still counts in ``score_mean`` with whatever score the
  runner gave it (normally 0): dropping failures would flatter a method that crashes.
* ``score_ci95`` is the normal-approximation half-width ``1.96 * s / sqrt(n)`` (``s`` the sample
  standard deviation); 0 when ``n < 2``. Crude for scores stuck at 0 or 1, but honest about noise.
* Cost: ``cost_usd_mean`` is the mean over *priced* records only (``cost_usd`` not None), None
  when none is priced; ``unpriced`` counts the others so a reader sees the gap.
* Latency percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7, the
  default of numpy and of Excel's PERCENTILE.INC).

``results.json`` keeps the records themselves, so any report can be regenerated with
:func:`load_records` and :func:`write_report`. matplotlib is imported only when plotting.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Record = Mapping[str, Any]

#: the order methods appear in tables, legends and colours: baselines first, then RLM by depth
METHOD_ORDER = (
    "direct",
    "summarize",
    "bm25",
    "compaction",
    "rlm-d0",
    "rlm-d1",
    "rlm-d2",
    "routed",
    "oracle",
)
_Z95 = 1.959963984540054  # the 97.5% standard normal quantile
_DPI = 110
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class Cell:
    """Aggregate of the records of one (family, length, method).

    ``length`` is None for a roll-up over all lengths (see :func:`summary_by_method`).
    """

    family: str
    length: int | None
    method: str
    n: int
    score_mean: float
    score_ci95: float
    failures: int
    cost_usd_mean: float | None
    unpriced: int
    input_tokens_mean: float
    output_tokens_mean: float
    calls_mean: float
    subcalls_mean: float
    latency_p50: float
    latency_p95: float

    @property
    def tokens_mean(self) -> float:
        return self.input_tokens_mean + self.output_tokens_mean


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: known methods in :data:`METHOD_ORDER`, unknown ones after, by name."""
    if method in METHOD_ORDER:
        return (METHOD_ORDER.index(method), method)
    return (len(METHOD_ORDER), method)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation (type 7); 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    h = (len(xs) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def _ci95(scores: Sequence[float]) -> float:
    if len(scores) < 2:
        return 0.0
    return _Z95 * statistics.stdev(scores) / math.sqrt(len(scores))


def _cell(family: str, length: int | None, method: str, records: Sequence[Record]) -> Cell:
    n = len(records)
    scores = [float(r["score"]) for r in records]
    priced = [float(r["cost_usd"]) for r in records if r.get("cost_usd") is not None]

    def mean(key: str) -> float:
        return sum(float(r.get(key) or 0) for r in records) / n

    latencies = [float(r["latency_s"]) for r in records]
    return Cell(
        family=family,
        length=length,
        method=method,
        n=n,
        score_mean=sum(scores) / n,
        score_ci95=_ci95(scores),
        failures=sum(1 for r in records if r.get("error") is not None),
        cost_usd_mean=sum(priced) / len(priced) if priced else None,
        unpriced=n - len(priced),
        input_tokens_mean=mean("input_tokens"),
        output_tokens_mean=mean("output_tokens"),
        calls_mean=mean("calls"),
        subcalls_mean=mean("subcalls"),
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
    )


def _sort_key(cell: Cell) -> tuple[str, tuple[int, str], int]:
    return (cell.family, method_rank(cell.method), -1 if cell.length is None else cell.length)


def aggregate(records: Iterable[Record]) -> list[Cell]:
    """One :class:`Cell` per (family, length, method), sorted by family, method, length."""
    groups: dict[tuple[str, int, str], list[Record]] = {}
    for r in records:
        groups.setdefault((str(r["family"]), int(r["length"]), str(r["method"])), []).append(r)
    return sorted((_cell(f, ln, m, rs) for (f, ln, m), rs in groups.items()), key=_sort_key)


def summary_by_method(records: Iterable[Record]) -> list[Cell]:
    """One :class:`Cell` per (family, method), pooled over lengths (``length`` None).

    Takes records, not cells: percentiles of a pooled sample cannot be rebuilt from per-cell ones.
    """
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((str(r["family"]), str(r["method"])), []).append(r)
    return sorted((_cell(f, None, m, rs) for (f, m), rs in groups.items()), key=_sort_key)


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a ``results.json`` (its ``records``), a JSON list, or a JSONL file."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # more than one JSON value: JSONL, one record a line
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        return list(data["records"]) if "records" in data else [data]
    if isinstance(data, list):
        return data
    raise ValueError(f"{path}: expected a results object, a list or JSONL of records")


# --- Markdown -------------------------------------------------------------------------------


def _fmt_cost(cell: Cell) -> str:
    if cell.cost_usd_mean is None:
        return "—"
    text = f"${cell.cost_usd_mean:.4g}"
    return f"{text} ({cell.unpriced} unpriced)" if cell.unpriced else text


def _fmt_score(cell: Cell) -> str:
    return f"{cell.score_mean:.3f} ± {cell.score_ci95:.3f}"


def _short_length(length: int) -> str:
    if length >= 1_000_000:
        return f"{length / 1e6:.3g}M"
    if length >= 1000:
        return f"{length / 1e3:.3g}K"
    return str(length)


def _header(records: Sequence[Record], cells: Sequence[Cell], config: Mapping[str, Any]) -> str:
    models = sorted({str(r["model"]) for r in records})
    subs = sorted({str(r["sub_model"]) for r in records})
    sizes = sorted({c.n for c in cells})
    n_text = "0" if not sizes else str(sizes[0])
    if len(sizes) > 1:
        n_text += f"–{sizes[-1]}"
    date = str(config.get("date") or datetime.now(UTC).date().isoformat())
    lines = [
        "# Benchmark results",
        "",
        f"Models: root {', '.join(f'`{m}`' for m in models) or '—'}, "
        f"sub {', '.join(f'`{m}`' for m in subs) or '—'} · "
        f"{len(records)} records, n = {n_text} per cell · date {date}",
    ]
    # scalar settings only: lists and nested dicts stay in results.json, not in a header line
    scalars = {k: v for k, v in config.items() if isinstance(v, str | int | float | bool)}
    if scalars:
        lines += ["", "Config: " + ", ".join(f"`{k}={v}`" for k, v in sorted(scalars.items()))]
    return "\n".join(lines)


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_markdown(records: Sequence[Record], config: Mapping[str, Any]) -> str:
    """The report as Markdown: per family, a method-by-length score table and a detail table."""
    cells = aggregate(records)
    pooled = {(c.family, c.method): c for c in summary_by_method(records)}
    out = [_header(records, cells, config)]
    for family in sorted({c.family for c in cells}):
        fam = [c for c in cells if c.family == family]
        lengths = sorted({c.length for c in fam if c.length is not None})
        methods = sorted({c.method for c in fam}, key=method_rank)
        by_key = {(c.method, c.length): c for c in fam}
        out += ["", f"## {family}", "", "Score (mean ± 95% CI) per context length (tokens); "]
        out[-1] += "cost, tokens, sub-calls and latency per task, pooled over lengths."
        head = ["method", *(f"{ln:,}" for ln in lengths)]
        head += ["cost/task", "tokens/task", "sub-calls", "p50 s", "p95 s", "failures"]
        out += ["", _row(head), _row(["---"] * len(head))]
        for m in methods:
            scores = [_fmt_score(c) if (c := by_key.get((m, ln))) else "—" for ln in lengths]
            p = pooled[(family, m)]
            out.append(
                _row(
                    [
                        m,
                        *scores,
                        _fmt_cost(p),
                        f"{p.tokens_mean:,.0f}",
                        f"{p.subcalls_mean:.1f}",
                        f"{p.latency_p50:.2f}",
                        f"{p.latency_p95:.2f}",
                        f"{p.failures}/{p.n}",
                    ]
                )
            )
        head = ["method", "length", "n", "score", "cost/task", "in tok", "out tok", "calls"]
        head += ["sub-calls", "p50 s", "p95 s", "failures"]
        out += ["", "<details><summary>per cell</summary>", "", _row(head), _row(["---"] * 12)]
        out.extend(
            _row(
                [
                    c.method,
                    f"{c.length:,}" if c.length is not None else "all",
                    str(c.n),
                    _fmt_score(c),
                    _fmt_cost(c),
                    f"{c.input_tokens_mean:,.0f}",
                    f"{c.output_tokens_mean:,.0f}",
                    f"{c.calls_mean:.1f}",
                    f"{c.subcalls_mean:.1f}",
                    f"{c.latency_p50:.2f}",
                    f"{c.latency_p95:.2f}",
                    f"{c.failures}/{c.n}",
                ]
            )
            for c in fam
        )
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


# --- plots ----------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch and no state shared
    # with a caller's own plots (and safe from threads).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    # No "Software" tag: the same data gives the same bytes across matplotlib versions.
    fig.savefig(path, dpi=_DPI, format="png", metadata={"Software": None})


def _colours(methods: Iterable[str]) -> dict[str, str]:
    return {m: f"C{i % 10}" for i, m in enumerate(sorted(set(methods), key=method_rank))}


def plot_score_vs_length(cells: Sequence[Cell], path: Path) -> None:
    """One subplot per family: mean score (± CI) against context length (log x), per method."""
    from matplotlib.ticker import NullLocator

    families = sorted({c.family for c in cells})
    ncols = max(1, min(3, len(families)))
    nrows = max(1, math.ceil(len(families) / ncols))
    fig = _new_figure(4.2 * ncols + 1.4, 3.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colour = _colours(c.method for c in cells)
    for ax, family in zip(axes, families, strict=False):
        fam = [c for c in cells if c.family == family and c.length is not None]
        for m in sorted({c.method for c in fam}, key=method_rank):
            line = sorted((c for c in fam if c.method == m), key=lambda c: c.length or 0)
            ax.errorbar(
                [c.length for c in line],
                [c.score_mean for c in line],
                # scores live in [0, 1]: a normal interval from a few samples is cut to it
                yerr=[
                    [min(c.score_ci95, c.score_mean) for c in line],
                    [min(c.score_ci95, 1.0 - c.score_mean) for c in line],
                ],
                label=m,
                color=colour[m],
                marker="o",
                markersize=4,
                capsize=3,
            )
        lengths = sorted({c.length for c in fam if c.length is not None})
        ax.set_xscale("log")
        ax.set_xticks(lengths, labels=[_short_length(ln) for ln in lengths])
        ax.xaxis.set_minor_locator(NullLocator())  # log minor ticks would clutter few lengths
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(family)
        ax.set_xlabel("context length (tokens, log scale)")
        ax.set_ylabel("mean score")
        ax.grid(alpha=0.3)
    for ax in axes[len(families) :]:
        ax.set_axis_off()
    if not families:
        axes[0].text(0.5, 0.5, "no records", ha="center", va="center")
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if handles:
        labels = sorted(handles, key=method_rank)
        fig.legend([handles[m] for m in labels], labels, loc="outside right upper")
    _save(fig, path)


def plot_cost_vs_score(pooled: Sequence[Cell], path: Path) -> None:
    """Score against cost per task, one point per (method, family), pooled over lengths.

    The x axis is dollars only when every point is fully priced; otherwise it is total tokens per
    task for every point (mixing the two units on one axis would mislead).
    """
    from matplotlib.lines import Line2D

    # dollars when every run is priced and something cost money (local models are priced at
    # $0: a cost axis of zeros says nothing, tokens do)
    use_cost = (
        bool(pooled)
        and all(c.cost_usd_mean is not None and not c.unpriced for c in pooled)
        and any(c.cost_usd_mean for c in pooled)
    )
    fig = _new_figure(6.4, 4.4)
    ax = fig.subplots()
    colour = _colours(c.method for c in pooled)
    families = sorted({c.family for c in pooled})
    marker = {f: _MARKERS[i % len(_MARKERS)] for i, f in enumerate(families)}
    xs = [(c.cost_usd_mean or 0.0) if use_cost else c.tokens_mean for c in pooled]
    for c, x in zip(pooled, xs, strict=True):
        ax.scatter([x], [c.score_mean], color=colour[c.method], marker=marker[c.family], s=36)
        ax.annotate(c.method, (x, c.score_mean), xytext=(4, 4), textcoords="offset points")
    # Log only over a decade or more (baselines vs RLMs usually are): on a narrower span a log
    # axis has no major tick and clutters itself with minor labels.
    log = bool(xs) and min(xs) > 0 and max(xs) >= 10 * min(xs)
    if log:
        ax.set_xscale("log")
    scale = " (log scale)" if log else ""
    if use_cost:
        ax.set_xlabel(f"mean cost per task, USD{scale}")
    else:
        ax.set_xlabel(f"mean tokens per task (in + out; no dollar cost to show){scale}")
    ax.set_ylabel("mean score")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    if not pooled:
        ax.text(0.5, 0.5, "no records", ha="center", va="center", transform=ax.transAxes)
    if len(families) > 1:
        ax.legend(
            [Line2D([], [], color="grey", marker=marker[f], linestyle="") for f in families],
            families,
            title="family",
        )
    _save(fig, path)


# --- everything -----------------------------------------------------------------------------


def write_report(
    out_dir: str | Path, records: Sequence[Record], config: Mapping[str, Any]
) -> dict[str, Path]:
    """Write results.json, results.md, score_vs_length.png and cost_vs_score.png to ``out_dir``.

    Returns the paths by kind: ``json``, ``markdown``, ``score_vs_length``, ``cost_vs_score``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "markdown": out / "results.md",
        "score_vs_length": out / "score_vs_length.png",
        "cost_vs_score": out / "cost_vs_score.png",
    }
    cells = aggregate(records)
    payload = {
        "config": dict(config),
        "cells": [asdict(c) for c in cells],
        "records": [dict(r) for r in records],
    }
    paths["json"].write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", "utf-8")
    paths["markdown"].write_text(render_markdown(records, config), encoding="utf-8")
    plot_score_vs_length(cells, paths["score_vs_length"])
    plot_cost_vs_score(summary_by_method(records), paths["cost_vs_score"])
    return paths
