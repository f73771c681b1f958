"""The table of ``make eval-small``: prompts v1 against v2, tuning against held-out.

    python benchmarks/eval_small.py benchmarks/results/eval-small

Reads ``{tuning,heldout}-{family}/records.jsonl`` under the directory (whatever has finished)
and writes ``table.md`` and ``table.json`` beside them. Scores are the records' (each family's
own scorer, bounded); sniah is also graded ``exact`` from the stored answer, the bare-value
reading. 95% intervals: Wilson's for 0/1 scores, the normal approximation otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from recursor.bench.runner import read_records
from recursor.bench.scoring import exact

FAMILIES = ("sniah", "multihop", "oolong")
SPLITS = ("tuning", "heldout")
METHODS = ("rlm-d1-v1", "rlm-d1-v2")


def interval(scores: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% interval."""
    n = len(scores)
    mean = sum(scores) / n
    if all(s in (0.0, 1.0) for s in scores):
        z = 1.96
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return mean, max(0.0, centre - half), min(1.0, centre + half)
    half = 1.96 * statistics.stdev(scores) / math.sqrt(n) if n > 1 else 0.0
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def scored(scores: list[float]) -> dict[str, Any]:
    """n, mean and 95% interval of ``scores``, as the tables store them."""
    mean, lo, hi = interval(scores)
    return {"n": len(scores), "mean": round(mean, 3), "ci95": [round(lo, 3), round(hi, 3)]}


def cell(records: list[dict[str, Any]], grade: str) -> dict[str, Any] | None:
    if not records:
        return None
    if grade == "exact":
        scores = [exact(r["answer"], r["gold"]) for r in records]
    else:
        scores = [float(r["score"]) for r in records]
    return {
        **scored(scores),
        "subcalls": round(sum(r["subcalls"] for r in records) / len(records), 1),
        "median_iterations": statistics.median(r["iterations"] or 0 for r in records),
        "median_answer_chars": statistics.median(len(r["answer"] or "") for r in records),
        "stop_reasons": {
            s: sum(1 for r in records if r["stop_reason"] == s)
            for s in sorted({r["stop_reason"] for r in records})
        },
        "p50_s": round(statistics.median(r["latency_s"] for r in records), 1),
    }


def build(root: Path) -> list[dict[str, Any]]:
    rows = []
    for family in FAMILIES:
        grades = ["contains", "exact"] if family == "sniah" else ["score"]
        for grade in grades:
            row: dict[str, Any] = {"family": family, "grade": grade}
            for split in SPLITS:
                records = read_records(root / f"{split}-{family}" / "records.jsonl")
                for m in METHODS:
                    row[f"{m}/{split}"] = cell([r for r in records if r["method"] == m], grade)
            rows.append(row)
    return rows


def fmt(c: dict[str, Any] | None) -> str:
    if c is None:
        return "not run"
    lo, hi = c["ci95"]
    return f"{c['mean']:.2f} [{lo:.2f}, {hi:.2f}] (n={c['n']})"


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ["family (scorer)"] + [f"{m[-2:]} {s}" for s in SPLITS for m in METHODS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [fmt(row[f"{m}/{s}"]) for s in SPLITS for m in METHODS]
        lines.append(f"| {row['family']} ({row['grade']}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| family | prompts/split | sub-calls per task | median iterations | median answer "
        "chars | p50 s | stop reasons |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["grade"] == "exact":
            continue
        for s in SPLITS:
            for m in METHODS:
                c = row[f"{m}/{s}"]
                if c is None:
                    continue
                lines.append(
                    f"| {row['family']} | {m[-2:]} {s} | {c['subcalls']} | "
                    f"{c['median_iterations']} | {c['median_answer_chars']} | {c['p50_s']} | "
                    + ", ".join(f"{k} {v}" for k, v in c["stop_reasons"].items())
                    + " |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    args = parser.parse_args()
    rows = build(args.root)
    (args.root / "table.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = markdown(rows)
    (args.root / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
