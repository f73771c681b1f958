"""A two-question conversation on the embedded model over the demo's context (README,
"Conversations"): the second question reuses a variable the first one made.

    nice -n 10 python benchmarks/session_demo.py [--chars 50000] [--model local:qwen2.5-coder-1.5b]

Prints each ask's answer, the cells the root ran (code and output, model text escaped), usage and
wall time. Model text is shown through ``repr``-safe escaping: it is never trusted as terminal
input.
"""

from __future__ import annotations

import argparse
import json
import time

from recursor import RLM, Limits
from recursor.demo import needle_task
from recursor.lm.registry import DEFAULT_MODEL
from recursor.trace import CellRan


def _safe(text: str, limit: int = 400) -> str:
    shown = text if len(text) <= limit else text[:limit] + " …"
    return shown.encode("unicode_escape").decode("ascii").replace("\\n", "\n    ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    task = needle_task(args.chars, args.seed)
    questions = [
        task.query.replace(
            " Answer with the number only.",
            " Keep the whole line that holds it in a variable named `needle_line`. "
            "Answer with the number only.",
        ),
        "How many characters long is `needle_line`, the line you found for the previous "
        "question? Compute it from the variable; answer with the number only.",
    ]
    print(f"model: {args.model}; context: {len(task.context):,} characters")
    with (
        RLM(args.model, limits=Limits(max_iterations=8, timeout_s=900)) as rlm,
        rlm.session(context=task.context) as s,
    ):
        for i, q in enumerate(questions, 1):
            t0 = time.perf_counter()
            r = s.ask(q)
            wall = time.perf_counter() - t0
            print(f"\nQ{i}: {q}")
            for ev in r.trace.events:
                if isinstance(ev, CellRan):
                    print(f"  cell (turn {ev.iteration}):\n    {_safe(ev.code)}")
                    out = ev.stdout or ev.error or ""
                    print(f"  output:\n    {_safe(out)}")
            print(f"A{i}: {_safe(r.answer or '')!s} ({r.stop_reason}, {r.iterations} turns)")
            u = r.usage.total
            print(f"  {u.calls} model calls, {u.input_tokens:,} in / {u.output_tokens:,} out")
            print(f"  wall {wall:.1f} s")
        line = next(x for x in task.context.splitlines() if task.gold in x)
        print(
            "\nexpected:",
            json.dumps({"A1": task.gold, "A2": len(line)}),
            "; session usage:",
            s.usage.total.calls,
            "calls",
        )


if __name__ == "__main__":
    main()
