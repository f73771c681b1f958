"""The host under hostile model code: peak RSS and time to end, per attack and environment.

Each case runs in a fresh child interpreter (so ``ru_maxrss`` is the peak of that run alone,
imports included; ``rss_before_mb`` is the RSS just before the run, so ``peak - before`` is what
the attack cost). Cases: a well-behaved run (the reference), a worker that stops reading while
a big batch is answered (``timeout_s=4``), a flood of frames between cells, 2,000 forged
sub-call requests, a header claiming 1 GiB, a 4 MB array of zeros, a 200 MB string with one
emoji, and a batch of 200,000 empty prompts.

Prints JSON and writes benchmarks/results/hostile.json.

Usage: python benchmarks/hostile.py [--envs subprocess,forkserver,bwrap] [--cases a,b]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

FORGE = """\
import gc, json, os, struct, time, threading
from recursor.sandbox.framing import Channel
ch = next(o for o in gc.get_objects() if isinstance(o, Channel))
def put(data):
    view = memoryview(data)
    while view:
        view = view[os.write(ch.write_fd, view):]
def frame(obj, tail=b''):
    body = json.dumps(obj).encode()
    put(struct.pack('>I', len(body)) + body + tail)
def request(ident, n=1):
    return {'op': 'subcall', 'id': ident,
            'request': {'kind': 'llm', 'prompts': ['x'] * n, 'batched': True, 'model': None}}
"""
FINISH = "FINAL('alive: ' + context)"

#: name -> (cells, limits keyword arguments, sub-model reply, seconds the root thinks)
CASES: dict[str, tuple[list[str], dict[str, Any], str, float]] = {
    "well_behaved": (
        ["print(len(llm_query_batched(['q'] * 50)))", FINISH],
        {"cell_timeout_s": 20},
        "y" * 20_000,
        0.0,
    ),
    "stop_reading": (
        [
            FORGE + "frame(request(10**6, 50))\nwhile True:\n    try:\n"
            "        time.sleep(60)\n    except BaseException:\n        pass",
            FINISH,
        ],
        {"timeout_s": 4, "cell_timeout_s": None},
        "y" * 20_000,
        0.0,
    ),
    "flood_between_cells": (
        [
            FORGE + "def flood():\n    time.sleep(0.3)\n"
            "    for i in range(5000):\n        frame(request(10**6 + i))\n"
            "threading.Thread(target=flood, daemon=True).start()",
            "print('second')",
            FINISH,
        ],
        {"cell_timeout_s": 20},
        "ok",
        1.0,
    ),
    "forged_requests": (
        [
            FORGE + "for i in range(2000):\n    frame(request(10**6 + i))\ntime.sleep(1.5)",
            FINISH,
        ],
        {"cell_timeout_s": 20},
        "ok",
        0.0,
    ),
    "header_1gib": (
        [FORGE + "put(struct.pack('>I', 1 << 30))\ntime.sleep(5)", FINISH],
        {"cell_timeout_s": 20},
        "ok",
        0.0,
    ),
    "zeros_array": (
        [
            FORGE + "body = b'{\"op\":\"var\",\"value\":[' + b'0,' * 2_000_000 + b'0]}'\n"
            "put(struct.pack('>I', len(body)) + body)\ntime.sleep(5)",
            FINISH,
        ],
        {"cell_timeout_s": 20},
        "ok",
        0.0,
    ),
    "emoji_string": (
        [
            FORGE + "blob = b'\\xf0\\x9f\\x98\\x80' + b'a' * (200 << 20)\n"
            "frame({'op': 'var', 'value': None, '_blobs': [[['value'], len(blob)]]})\n"
            "put(blob)\ntime.sleep(5)",
            FINISH,
        ],
        {"cell_timeout_s": 20},
        "ok",
        0.0,
    ),
    "batch_200k": (
        [
            "try:\n    llm_query_batched([''] * 200_000)\n"
            "except Exception as exc:\n    print(type(exc).__name__)",
            FINISH,
        ],
        {"cell_timeout_s": 20},
        "ok",
        0.0,
    ),
}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _environment(name: str) -> Any:
    from recursor.sandbox import SubprocessEnvironment

    if name == "subprocess":
        return SubprocessEnvironment(prestart=False)
    if name == "forkserver":
        from recursor.sandbox.forkserver import ForkServerEnvironment

        return ForkServerEnvironment()
    from recursor.sandbox.bwrap import BwrapEnvironment

    return BwrapEnvironment()


def run_case(case: str, env_name: str) -> dict[str, Any]:
    """One case in this process (the child's side)."""
    from recursor import RLM, Limits
    from recursor.testing import FunctionLM

    cells, limits, reply, think = CASES[case]
    replies = [f"```repl\n{c}\n```" for c in cells]
    asked = [0]

    def root(messages: object) -> str:
        asked[0] += 1
        if asked[0] > 1:
            time.sleep(think)
        return replies.pop(0) if replies else f"```repl\n{FINISH}\n```"

    env = _environment(env_name)
    rlm = RLM(
        FunctionLM(root), FunctionLM(lambda m: reply), environment=env, limits=Limits(**limits)
    )
    threads = [threading.active_count()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            threads.append(threading.active_count())

    before = _rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    result = rlm.completion("q", context="ctx")
    seconds = time.monotonic() - t0
    done.set()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    env.close()
    return {
        "seconds": round(seconds, 2),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "attack_mb": round(peak - before, 1),
        "peak_threads": max(threads),
        "stop_reason": result.stop_reason,
        "answer": result.answer,
    }


def in_child(case: str, env_name: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, env_name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or [f"exit {out.returncode}"]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", default="subprocess,forkserver,bwrap")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--child", nargs=2, metavar=("CASE", "ENV"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(*args.child)))
        return
    envs = [e for e in args.envs.split(",") if e != "bwrap" or shutil.which("bwrap")]
    results = {env: {case: in_child(case, env) for case in args.cases.split(",")} for env in envs}
    report = {"python": platform.python_version(), "machine": platform.machine(), **results}
    text = json.dumps(report, indent=2)
    print(text)
    path = Path(__file__).parent / "results" / "hostile.json"
    path.write_text(text + "\n")


if __name__ == "__main__":
    main()
