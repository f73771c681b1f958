"""Re-score a bench results directory's stored answers under the current scorers.

    python benchmarks/rescore.py benchmarks/results/bench-embedded

No model runs: each record's answer is graded again by its task's scorer (the tasks are
regenerated from the directory's config, so the scorer and gold come from the generator, not
from the record), then records.jsonl and the reports are rewritten. Prints, as JSON, every
record whose score changed. Made for the bounded lenient scorers (issue 17): a run's answers
stay the evidence, only the grading moves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from recursor.bench import generate
from recursor.bench.report import write_report
from recursor.bench.runner import read_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    config = json.loads((args.out / "results.json").read_text())["config"]
    tasks = {
        t.id: t
        for family in config["families"]
        for length in config["lengths"]
        for t in generate(family, config["n"], length, config["seed"])
    }
    records = read_records(args.out / "records.jsonl")
    changed = []
    for r in records:
        task = tasks[r["task_id"]]
        assert str(task.gold) == str(r["gold"]), r["task_id"]
        new = task.score(r["answer"])
        if new != r["score"]:
            changed.append(
                {
                    "task": r["task_id"],
                    "method": r["method"],
                    "answer_chars": len(r["answer"] or ""),
                    "old": r["score"],
                    "new": new,
                }
            )
            r["score"] = new
    with (args.out / "records.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    config["rescored"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_report(args.out, records, config)
    print(json.dumps(changed, indent=1))


if __name__ == "__main__":
    main()
