"""The routing table of the README: ``routed`` beside ``direct`` and ``rlm-d1`` on the embedded
models (issue 14), from the records of two resumable ``recursor bench`` runs.

The fixed routes and ``routed`` run as two bench processes (``--methods direct,rlm-d1`` and
``--methods routed``, the same families, lengths, n, window, limits), each into its own
directory; this script keeps the records of that matrix (by the runner's job key), writes the
usual report (results.json/.md, plots) into ``--out``, and prints per cell: n, mean score, mean
tokens, p50 latency, and which routes ``routed`` took; then what routing saved against
``rlm-d1`` in tokens and time, and its score beside ``rlm-d1``'s; the same as markdown in
``OUT/routing.md`` (the README's table). A later directory's record of a job replaces an
earlier one's: a ``routed`` run in a process of its own (no warm prompt cache from the
``direct`` job of the same task) goes last.

Usage: python benchmarks/routed_table.py DIR [DIR ...] --out benchmarks/results/bench-routed
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from recursor.bench import generate
from recursor.bench.methods import Models
from recursor.bench.report import percentile, write_report
from recursor.bench.runner import RECORDS, Job, job_key, read_records
from recursor.limits import Limits
from recursor.testing import ScriptedLM

CONFIG: dict[str, Any] = {
    "families": ["sniah", "oolong"],
    "methods": ["direct", "rlm-d1", "routed"],
    "model": "local:qwen2.5-coder-1.5b",
    "sub_model": "local:qwen2.5-coder-0.5b",
    "n": 5,
    "lengths": [1000, 4000],
    "seed": 0,
    "window_tokens": 2048,
    "environment": "subprocess",
    "max_iterations": 6,
    "timeout_s": 240.0,
    "cell_timeout_s": 60.0,
    "concurrency": 1,
}


def matrix_records(dirs: list[Path]) -> list[dict[str, Any]]:
    """The records of CONFIG's matrix found in ``dirs`` (older or other runs' are skipped)."""
    c = CONFIG
    models = Models(
        root=ScriptedLM([], name=c["model"]),
        sub=ScriptedLM([], name=c["sub_model"]),
        window_tokens=c["window_tokens"],
        environment=c["environment"],
        limits=Limits(
            max_iterations=c["max_iterations"],
            timeout_s=c["timeout_s"],
            cell_timeout_s=c["cell_timeout_s"],
        ),
    )
    wanted = {
        job_key(Job(t, m), models)
        for f in c["families"]
        for length in c["lengths"]
        for t in generate(f, c["n"], length, c["seed"])
        for m in c["methods"]
    }
    found: dict[str, dict[str, Any]] = {}
    for d in dirs:
        for r in read_records(d / RECORDS):
            if r.get("key") in wanted and r.get("stop_reason") != "crash":
                found[r["key"]] = r
    return list(found.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    records = matrix_records(args.dirs)
    write_report(args.out, records, CONFIG)
    cells: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        cells[(r["family"], r["length"], r["method"])].append(r)
    rows = []
    for (family, length, m), rs in sorted(cells.items()):
        routes = Counter(
            r["stop_reason"].split(" via ")[-1] for r in rs if " via " in r["stop_reason"]
        )
        rows.append(
            {
                "family": family,
                "length": length,
                "method": m,
                "n": len(rs),
                "score": statistics.fmean(r["score"] for r in rs),
                "tokens": statistics.fmean(r["input_tokens"] + r["output_tokens"] for r in rs),
                "p50_s": percentile([r["latency_s"] for r in rs], 50),
                "timeouts": sum(r["stop_reason"].startswith("timeout") for r in rs),
                "routes": dict(routes),
            }
        )
    saved = savings(records)
    (args.out / "routing.md").write_text(markdown(rows, saved))
    print(json.dumps({"cells": rows, "saved": saved}, indent=1))


def markdown(rows: list[dict[str, Any]], saved: dict[str, Any]) -> str:
    """The README's routing table: one row per cell and method, then routed against rlm-d1."""
    lines = [
        "| cell | method | n | mean score | tokens/task | p50 s | timeouts | routes taken |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        routes = ", ".join(f"{k} x{v}" for k, v in sorted(r["routes"].items()))
        lines.append(
            f"| {r['family']} {r['length'] // 1000}K | {r['method']} | {r['n']} "
            f"| {r['score']:.2f} | {r['tokens']:,.0f} | {r['p50_s']:.1f} "
            f"| {r['timeouts']}/{r['n']} | {routes} |"
        )
    lines += [
        "",
        "| cell | n | routed tokens | rlm-d1 tokens | tokens saved | routed s | rlm-d1 s "
        "| time saved | score routed / rlm-d1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in [*sorted(saved["cells"].items()), ("all", saved["all"])]:
        if not c:
            continue
        a, b = c["routed"], c["rlm-d1"]
        lines.append(
            f"| {name} | {c['n']} | {a['tokens']:,} | {b['tokens']:,} | {c['tokens_saved']:.0%} "
            f"| {a['seconds']:,.0f} | {b['seconds']:,.0f} | {c['seconds_saved']:.0%} "
            f"| {a['score']:.2f} / {b['score']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def savings(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``routed`` saved against ``rlm-d1`` (the fixed route it replaces) on the same tasks:
    per cell and over the whole matrix, tokens and wall time summed, and the scores beside."""
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        by[(r["task_id"], r["method"])] = r
    out: dict[str, Any] = {"cells": {}, "all": {}}
    groups: dict[str, list[str]] = defaultdict(list)
    for task_id, method in by:
        if method == "routed" and (task_id, "rlm-d1") in by:
            family, length, _ = task_id.rsplit("-", 2)
            groups[f"{family} {length}"].append(task_id)
            groups["all"].append(task_id)
    for name, ids in sorted(groups.items()):
        row: dict[str, Any] = {"n": len(ids)}
        for m in ("routed", "rlm-d1"):
            rs = [by[(i, m)] for i in ids]
            row[m] = {
                "tokens": sum(r["input_tokens"] + r["output_tokens"] for r in rs),
                "seconds": round(sum(r["latency_s"] for r in rs), 1),
                "score": round(statistics.fmean(r["score"] for r in rs), 3),
            }
        for what in ("tokens", "seconds"):
            fixed = row["rlm-d1"][what]
            row[f"{what}_saved"] = round(1 - row["routed"][what] / fixed, 3) if fixed else None
        if name == "all":
            out["all"] = row
        else:
            out["cells"][name] = row
    return out


if __name__ == "__main__":
    main()
