"""Scaffold overhead of recursor with a zero-latency scripted model, per environment.

Prints JSON and writes benchmarks/results/overhead.json:
- per_iteration_us: median wall time of one root iteration (a zero-latency reply, its one small
  cell, the observation) inside an N-iteration run, from the trace's model-call timestamps, so
  start-up and teardown are not in it;
- one_turn_completion_ms: median wall time of a whole completion whose single reply runs one
  cell that calls FINAL (start-up, the cell, teardown), with a 0.2 s pause (not timed) between
  completions, as any real model call gives the pre-started spare worker time to boot;
- one_turn_back_to_back_ms: the same with no pause (the spare may still be booting);
- one_turn_cold_ms (subprocess): the same with prestart=False (every worker boots on demand);
- rlms (when installed in this venv): the one-turn completion through the official package on
  its default ``local`` environment, with a scripted client, in this process, and our ratio to
  it. Its per-iteration cost is not reported: a completion of 1 or of 300 turns takes the same
  ~0.5 s (its teardown wait overlaps the work), so no difference of runs can measure it.

Usage: python benchmarks/overhead.py [--repeats 15] [--iterations 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from recursor import RLM, Limits
from recursor.sandbox import Environment, InProcessEnvironment, SubprocessEnvironment
from recursor.testing import ScriptedLM
from recursor.trace import ModelCalled

CELL = "```repl\nx = len(context)\nprint(x)\n```"
FINISH = "```repl\nFINAL(str(len(context)))\n```"


def per_iteration(env: Environment, iterations: int) -> float:
    """Seconds per iteration inside one run (first to last model call, over the iterations)."""
    replies = [CELL] * iterations + [FINISH]
    rlm = RLM(ScriptedLM(replies), environment=env, limits=Limits(max_iterations=iterations + 5))
    result = rlm.completion("how long is the context?", context="x" * 10_000)
    assert result.answer == "10000", result
    stamps = [e.t for e in result.trace.of(ModelCalled)]
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def one_turn(env: Environment, pause: float = 0.0) -> float:
    time.sleep(pause)
    rlm = RLM(ScriptedLM(["```repl\nFINAL(str(len(context)))\n```"]), environment=env)
    t0 = time.perf_counter()
    result = rlm.completion("how long?", context="x" * 10_000)
    elapsed = time.perf_counter() - t0
    assert result.answer == "10000"
    return elapsed


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def measure(make: type[Environment], repeats: int, iterations: int) -> dict[str, float]:
    env = make()
    one_turn(env, 0.2)  # warm imports and caches
    per_iter = [per_iteration(env, iterations) for _ in range(repeats)]
    out = {
        "per_iteration_us": round(statistics.median(per_iter) * 1e6, 1),
        "one_turn_completion_ms": median_ms([one_turn(env, 0.2) for _ in range(repeats)]),
        "one_turn_back_to_back_ms": median_ms([one_turn(env) for _ in range(repeats)]),
    }
    if make is SubprocessEnvironment:
        cold = SubprocessEnvironment(prestart=False)
        out["one_turn_cold_ms"] = median_ms([one_turn(cold, 0.05) for _ in range(repeats)])
    return out


def measure_rlms(repeats: int) -> dict[str, object]:
    try:
        from _rlms import RLMS_FINISH, make_rlms, rlms_version

        version = rlms_version()
    except Exception as exc:
        return {"skipped": f"rlms is not available: {type(exc).__name__}: {exc}"}

    def run() -> float:
        rlm = make_rlms([RLMS_FINISH])
        t0 = time.perf_counter()
        result = rlm.completion("x" * 10_000, root_prompt="how long is the context?")
        elapsed = time.perf_counter() - t0
        assert str(result.response) == "10000", result.response
        return elapsed

    run()
    return {
        "version": version,
        "environment": "local",
        "one_turn_completion_ms": median_ms([run() for _ in range(repeats)]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    report = {
        "benchmark": "overhead",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "repeats": args.repeats,
        "iterations": args.iterations,
        "targets": {"subprocess": {"per_iteration_us": 5000, "one_turn_completion_ms": 50}},
        "environments": {
            env.name: measure(env, args.repeats, args.iterations)
            for env in (InProcessEnvironment, SubprocessEnvironment)
        },
    }
    peer = measure_rlms(args.repeats)
    report["rlms"] = peer
    if "skipped" not in peer:
        ours = report["environments"]["subprocess"]  # type: ignore[index]
        report["ratio_rlms_over_recursor_subprocess"] = {
            "one_turn_completion": round(
                float(peer["one_turn_completion_ms"]) / ours["one_turn_completion_ms"],
                1,  # type: ignore[arg-type]
            ),
        }
    out = Path(__file__).parent / "results" / "overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
