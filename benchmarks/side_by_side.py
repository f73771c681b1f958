"""The side-by-side table of ``make table`` (issue 16): recursor against rlms, direct and bm25.

    python benchmarks/side_by_side.py benchmarks/results/table-embedded

Reads ``records.jsonl`` in the directory (whatever has finished: a table stopped part way is
reported as far as it got, each cell with its n) and writes there:

- ``table.md`` / ``table.json``: per family, one row per method and one column per length, the
  mean score with its 95% interval and n (Wilson's for 0/1 scores, the normal approximation
  otherwise), then per method what it cost: tokens, p50 seconds, stop reasons;
- ``results.md``, ``results.json``, ``score_vs_length.png``, ``cost_vs_score.png``: the bench's
  own report, rebuilt from the records, so the plot exists even when the run was stopped.

With ``--readme README.md`` the table also replaces what stands between the README's
``<!-- side-by-side table -->`` and ``<!-- /side-by-side table -->`` lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from eval_small import fmt, scored

from recursor.bench.report import method_rank, write_report
from recursor.bench.runner import RECORDS, read_records

Record = dict[str, Any]


def cell(records: list[Record]) -> dict[str, Any] | None:
    if not records:
        return None
    return scored([float(r["score"]) for r in records])


def costs(records: list[Record]) -> dict[str, Any]:
    return {
        "n": len(records),
        "tokens": round(statistics.mean(r["input_tokens"] + r["output_tokens"] for r in records)),
        "subcalls": round(statistics.mean(r["subcalls"] for r in records), 1),
        "p50_s": round(statistics.median(r["latency_s"] for r in records), 1),
        "stop_reasons": dict(sorted(Counter(str(r["stop_reason"]) for r in records).items())),
    }


def build(records: list[Record]) -> dict[str, Any]:
    families = sorted({r["family"] for r in records})
    methods = sorted({r["method"] for r in records}, key=method_rank)
    table: dict[str, Any] = {"families": {}, "methods": {}}
    for family in families:
        of_family = [r for r in records if r["family"] == family]
        lengths = sorted({int(r["length"]) for r in of_family})
        table["families"][family] = {
            "lengths": lengths,
            "rows": {
                m: [
                    cell([r for r in of_family if r["method"] == m and r["length"] == n])
                    for n in lengths
                ]
                for m in methods
            },
        }
    for m in methods:
        table["methods"][m] = costs([r for r in records if r["method"] == m])
    return table


def _k(length: int) -> str:
    return f"{length // 1000}K" if length % 1000 == 0 else str(length)


def markdown(table: dict[str, Any]) -> str:
    lines: list[str] = []
    for family, fam in table["families"].items():
        head = ["method"] + [f"{family} {_k(n)}" for n in fam["lengths"]]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m, cells in fam["rows"].items():
            lines.append(f"| {m} | " + " | ".join(fmt(c) for c in cells) + " |")
        lines.append("")
    lines += [
        "| method | runs | tokens per run | sub-calls per run | p50 s | stop reasons |",
        "|---|---|---|---|---|---|",
    ]
    for m, c in table["methods"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in c["stop_reasons"].items())
        lines.append(
            f"| {m} | {c['n']} | {c['tokens']:,} | {c['subcalls']} | {c['p50_s']} | {reasons} |"
        )
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- side-by-side table -->", "<!-- /side-by-side table -->"


def into_readme(readme: Path, text: str) -> None:
    doc = readme.read_text()
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        sys.exit(f"{readme} has no {BEGIN} ... {END} block")
    readme.write_text(doc[: start + len(BEGIN)] + "\n" + text + doc[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--readme", type=Path, help="a README whose table block to replace")
    args = parser.parse_args()
    records = read_records(args.root / RECORDS)
    if not records:
        sys.exit(f"no records in {args.root / RECORDS}")
    table = build(records)
    (args.root / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    text = markdown(table)
    (args.root / "table.md").write_text(text)
    # the bench's own settings when a run of it finished here; a stopped run wrote none
    previous = args.root / "results.json"
    config = (
        json.loads(previous.read_text())["config"]
        if previous.exists()
        else {"source": "make table (stopped before its report)"}
    )
    write_report(args.root, records, config)
    if args.readme is not None:
        into_readme(args.readme, text)
    print(text)


if __name__ == "__main__":
    main()
