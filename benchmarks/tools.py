"""Overhead of a call of the caller's tool from model code, beside a plain in-cell call.

Prints JSON and writes benchmarks/results/tools.json. Per environment (``subprocess``, the
default sandbox, is the one with a target; ``inprocess`` for comparison), a cell of a
scripted root makes ``--calls`` calls in one loop of:
- ``tool_sync``: a trivial sync tool (``add(a, b=1) -> a + b``) run on the host;
- ``tool_async``: the same as an ``async def``;
- ``plain``: the same function defined in the cell (the baseline: no channel at all);
and times each call with ``time.perf_counter`` inside the cell, so the numbers are what model
code waits: p50/p90/p99 per call in microseconds, and the whole loop in milliseconds. Each
figure is the median over ``--repeats`` completions (a fresh worker each). The target of the
issue: a trivial tool at <= 1 ms p50 from the subprocess sandbox.

Usage: python benchmarks/tools.py [--repeats 5] [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

from recursor import RLM, Limits
from recursor.sandbox import InProcessEnvironment, SubprocessEnvironment
from recursor.sandbox.base import Environment
from recursor.testing import ScriptedLM
from recursor.tools import Tool
from recursor.trace import CellRan

TARGET_P50_US = 1000.0

CELL = """\
import json, time
def plain(a, b=1):
    return a + b
def loop(fn, n):
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    lat.sort()
    q = lambda p: round(lat[min(n - 1, int(p * n))] * 1e6, 1)
    return {"p50_us": q(0.5), "p90_us": q(0.9), "p99_us": q(0.99),
            "loop_ms": round(total * 1e3, 2)}
out = {name: loop(fn, N) for name, fn in
       (("tool_sync", add), ("tool_async", add_async), ("plain", plain))}
print(json.dumps(out))
FINAL("done")
"""


def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


async def add_async(a: int, b: int = 1) -> int:
    """Add two integers, asynchronously."""
    return a + b


def once(env: Environment, calls: int) -> dict[str, dict[str, float]]:
    cell = f"```repl\nN = {calls}\n{CELL}```"
    root = ScriptedLM([cell])
    limits = Limits(max_tool_calls=None, cell_timeout_s=300)
    with RLM(root, environment=env, limits=limits, tools=[add, Tool(add_async)]) as rlm:
        result = rlm.completion("q", "ctx")
    assert result.answer == "done", result.error
    stdout = result.trace.of(CellRan)[0].stdout
    data: dict[str, dict[str, float]] = json.loads(stdout)
    return data


def measure(env: Environment, repeats: int, calls: int) -> dict[str, Any]:
    once(env, 50)  # warm imports, the tool loop and its threads
    runs = [once(env, calls) for _ in range(repeats)]
    out: dict[str, Any] = {}
    for name in runs[0]:
        out[name] = {
            key: round(statistics.median(r[name][key] for r in runs), 2) for key in runs[0][name]
        }
    out["tool_over_plain_p50_us"] = round(out["tool_sync"]["p50_us"] - out["plain"]["p50_us"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    envs: dict[str, Environment] = {
        "subprocess": SubprocessEnvironment(),
        "inprocess": InProcessEnvironment(trusted=True),
    }
    report: dict[str, Any] = {
        "benchmark": "tools",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        # the machine is shared: the load during the run says how much of it was ours
        "load_average_before": [round(x, 1) for x in os.getloadavg()],
        "repeats": args.repeats,
        "calls_per_cell": args.calls,
        "targets": {"subprocess": {"tool_sync_p50_us": TARGET_P50_US}},
        "environments": {},
    }
    for name, env in envs.items():
        try:
            report["environments"][name] = measure(env, args.repeats, args.calls)
        finally:
            env.close()
    report["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    sub = report["environments"]["subprocess"]["tool_sync"]["p50_us"]
    report["subprocess_meets_target"] = sub <= TARGET_P50_US
    text = json.dumps(report, indent=2)
    print(text)
    out = Path(__file__).parent / "results" / "tools.json"
    out.write_text(text + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
