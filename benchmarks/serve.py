"""``recursor serve`` against the same calls made in-process, on the stub model.

Prints JSON and writes benchmarks/results/serve.json:
- sequential: one client, N calls one after another, p50/p99 latency in-process (the library's
  ``acompletion`` / the LM's ``acomplete`` in this process) and served (HTTP to a
  ``recursor serve`` process), and the difference: what serving adds to one call. For the RLM
  profile (two root calls, a cell in a subprocess worker, one ``llm_query``) and for the plain
  profile (one model call: the HTTP layer alone).
- load: ``--clients`` concurrent clients (default 50) for ``--duration`` seconds (default 30,
  not the issue's 60: the machine is shared by several jobs; pass 60 to match), against the
  server and, for comparison, the same number of concurrent ``acompletion`` tasks in this
  process: requests per second, p50/p99 latency, errors (and why, in "failures"), and the
  server's RSS: after the sequential warm-up, after a 5 s load at the same concurrency (the
  start of the growth figure: N runs in flight have a working set), and at the end.

The stub model answers at once, so every figure is scaffold and serving cost, no model time.
The clients are httpx (one pooled async client), lighter than the openai SDK, so that on a
2-core machine the load generator takes as little CPU from the server as it can.

Usage: python benchmarks/serve.py [--duration 30] [--clients 50] [--sequential 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from recursor import RLM, Limits
from recursor.lm.registry import create_lm
from recursor.lm.stub_server import StubServer
from recursor.sandbox import resolve_environment

MODEL = "openai:gpt-4o-mini"
CONTEXT = "x" * 10_000
ASK = {"model": "rlm", "messages": [{"role": "user", "content": "how long?"}], "context": CONTEXT}
PLAIN = {"model": "mini", "messages": [{"role": "user", "content": "echo hi"}]}


def handler(messages: list[dict[str, str]]) -> str:
    if messages[0]["role"] == "system":
        if len(messages) == 2:
            return "```repl\nn = len(context)\nsays = llm_query('echo ' + str(n))\n```"
        return "FINAL_VAR(says)"
    return messages[-1]["content"].removeprefix("echo ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies),
        "p50_ms": pct(latencies, 0.50),
        "p99_ms": pct(latencies, 0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else float("nan"),
    }


async def timed(fn: Callable[[], Awaitable[bool]], n: int) -> tuple[list[float], int]:
    latencies, errors = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        ok = await fn()
        latencies.append(time.perf_counter() - t0)
        errors += not ok
    return latencies, errors


#: why calls failed, by kind (the load's "errors" broken down)
FAILURES: Counter[str] = Counter()


async def load(fn: Callable[[], Awaitable[bool]], clients: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + duration

    async def client() -> None:
        nonlocal errors
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                ok = await fn()
            except Exception as exc:
                FAILURES[type(exc).__name__] += 1
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok
            await asyncio.sleep(0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {
        **summary(latencies),
        "errors": errors,
        "rps": round(len(latencies) / wall, 1),
        "seconds": round(wall, 1),
    }


def start_server(tmp: Path, base_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = tmp / "recursor.toml"
    config.write_text(
        f'[server]\nport = {port}\ndata_dir = "{tmp / "data"}"\nmax_concurrent_runs = 256\n'
        f'[profiles.rlm]\nroot = "{MODEL}"\nmax_concurrency = 16\n'
        f'[profiles.mini]\nmodel = "{MODEL}"\n'
    )
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recursor.cli", "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).is_success:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stub = StubServer(handler=handler, record=False).start()
    os.environ["OPENAI_BASE_URL"] = stub.base_url
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    lm = create_lm(MODEL)
    env = resolve_environment("subprocess")
    limits = Limits()

    async def inproc_rlm() -> bool:
        rlm = RLM(lm, environment=env, limits=limits)  # as the server does: objects, per run
        result = await rlm.acompletion("how long?", context=CONTEXT)
        if result.answer != "10000":
            FAILURES[f"in-process {result.stop_reason}: {str(result.error)[:120]}"] += 1
        return result.answer == "10000"

    async def inproc_plain() -> bool:
        return (await lm.acomplete(PLAIN["messages"])).text == "hi"  # type: ignore[arg-type]

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), stub.base_url)
        try:
            limits_http = httpx.Limits(max_connections=args.clients + 10)
            async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits_http) as http:

                async def served_rlm() -> bool:
                    r = await http.post("/v1/chat/completions", json=ASK)
                    return (
                        r.status_code == 200
                        and r.json()["choices"][0]["message"]["content"] == "10000"
                    )

                async def served_plain() -> bool:
                    r = await http.post("/v1/chat/completions", json=PLAIN)
                    return r.status_code == 200

                # warm-up: spare workers, connection pools, imports on both sides
                await timed(inproc_rlm, 5)
                await timed(served_rlm, 5)
                await timed(served_plain, 5)
                rss_start = rss_mb(proc.pid)
                seq: dict[str, Any] = {}
                for name, a, b in (
                    ("rlm", inproc_rlm, served_rlm),
                    ("plain", inproc_plain, served_plain),
                ):
                    lat_a, err_a = await timed(a, args.sequential)
                    lat_b, err_b = await timed(b, args.sequential)
                    sa, sb = summary(lat_a), summary(lat_b)
                    seq[name] = {
                        "in_process": {**sa, "errors": err_a},
                        "served": {**sb, "errors": err_b},
                        "added_p50_ms": round(sb["p50_ms"] - sa["p50_ms"], 2),
                        "added_p99_ms": round(sb["p99_ms"] - sa["p99_ms"], 2),
                    }
                # RSS growth is read across the timed load, after a short load at the same
                # concurrency: the working set of N runs in flight is not growth
                await load(served_rlm, args.clients, min(5.0, args.duration))
                rss_loaded = rss_mb(proc.pid)
                served_load = await load(served_rlm, args.clients, args.duration)
                rss_end = rss_mb(proc.pid)
            inproc_load = await load(inproc_rlm, args.clients, args.duration)
        finally:
            proc.terminate()
            proc.wait(60)
            env.close()
            await lm.aclose()
            stub.stop()
    served_load["rss_mb_after_warmup"] = rss_start
    served_load["rss_mb_start"] = rss_loaded
    served_load["rss_mb_end"] = rss_end
    served_load["rss_growth_pct"] = round((rss_end - rss_loaded) / rss_loaded * 100, 1)
    return {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "sequential_calls": args.sequential,
        "sequential": seq,
        "load": {
            "clients": args.clients,
            "duration_s": args.duration,
            "served": served_load,
            "in_process": inproc_load,
            "added_p50_ms": round(served_load["p50_ms"] - inproc_load["p50_ms"], 2),
            "added_p99_ms": round(served_load["p99_ms"] - inproc_load["p99_ms"], 2),
        },
        "failures": dict(FAILURES),
        "load_average_at_end": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--no-write", action="store_true", help="Print only.")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if not args.no_write:
        out = Path(__file__).parent / "results" / "serve.json"
        out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
