"""Sub-call fan-out through the broker, against an OpenAI-compatible server on 127.0.0.1.

Prints JSON and writes benchmarks/results/fanout.json:
- latency: 400 prompts, each answered after 500 ms, at concurrency 64 (ideal 400 x 0.5 / 64 =
  3.125 s; in whole waves 7 x 0.5 = 3.5 s); target <= 1.15 x ideal;
- cpu: 1,000 prompts answered after 50 ms at concurrency 64: client CPU dominates, so the
  broker is reported as a ratio to a bare ``AsyncOpenAI`` client with a semaphore measured in
  the same run (target <= 1.1);
- the same workloads through the official ``rlms`` package (its ``llm_query_batched`` on its
  ``local`` environment, root model scripted offline, sub-calls through its own OpenAI client to
  the same server), with the ratios;
- bare_asyncopenai_4_pools (informational): the bare client split over 4 connection pools of
  16, showing how much of the client CPU at concurrency 64 is the httpx2 pool's bookkeeping;
- bare_asyncopenai_aiohttp (informational): the bare client on the SDK's aiohttp transport
  (``http_client=openai.DefaultAioHttpClient()``, one pool), the transport recursor's async
  path uses when ``aiohttp`` is installed (the ``openai`` extra brings it; see
  ``recursor.lm._http``);
- big_prompts: 1, 10 and 50 MB prompts through the broker (``llm_query`` from a cell to a
  zero-latency in-process model, so what is timed is the broker's own path: context-window
  check, cache key, trace digest and preview, the REPL crossing), target linear and <= 0.1 s
  per 10 MB.

Setup: the stub server (``recursor.lm.stub_server``, stdlib ThreadingHTTPServer) runs in a
separate process started with ``sys.executable``, so its CPU is not in this process's GIL or
its CPU time; "cpu_s" is this process's CPU time (all threads) during the run. Every method
makes real HTTP calls through the official ``openai`` SDK with SDK retries off: over httpx2
(the SDK's HTTP library since openai 3.0), except bare_asyncopenai_aiohttp and the recursor
runs (aiohttp when installed). The recursor runs use ``environment="inprocess"`` (and
"subprocess" for the broker) and the default in-memory cache (all prompts differ, so it never
hits). Each figure is the median of ``--repeats`` runs, methods interleaved.

stderr may show "Task exception was never retrieved ... AsyncClient.aclose() ... Event loop is
closed": rlms never closes its AsyncOpenAI clients, and the SDK's finaliser schedules their
close on whatever loop runs when they are collected (it does not appear without rlms).

Usage: python benchmarks/fanout.py [--repeats 3] [--quick] [--parts big_prompts ...]

``--parts`` runs some of latency, cpu, big_prompts; their figures replace those parts in
results/fanout.json and the other parts' figures are kept (each part is self-contained).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recursor import RLM, Limits
from recursor.lm import openai as openai_lm
from recursor.testing import FunctionLM, ScriptedLM

SERVER = """
import sys
from recursor.lm.stub_server import StubServer
srv = StubServer(handler=lambda chat: "ok", delay=float(sys.argv[1]))
srv.script.record = False
srv.start()
print(srv.base_url, flush=True)
sys.stdin.read()
srv.stop()
"""


class Server:
    """The stub server in its own process; ``base_url`` once it listens."""

    def __init__(self, delay: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def timed(fn: Callable[[], int], n: int) -> dict[str, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    ok = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert ok == n, f"{ok} of {n} answered"
    return {"wall_s": wall, "cpu_s": cpu}


# -- the methods -------------------------------------------------------------------------------


def bare(base_url: str, n: int, conc: int, shards: int = 1, aiohttp: bool = False) -> int:
    """``AsyncOpenAI`` + a semaphore. ``shards`` > 1 spreads the calls over that many clients
    (connection pools) of ``conc / shards`` each: the httpx2 pool does per-event work
    proportional to queued requests x open connections, so one pool of 64 costs ~3x the CPU
    of four pools of 16 (informational: what the LM layer could gain). ``aiohttp``: the SDK's
    aiohttp transport instead of httpx2."""
    import openai

    async def main() -> int:
        clients = [
            openai.AsyncOpenAI(
                base_url=base_url,
                api_key="k",
                max_retries=0,
                http_client=openai.DefaultAioHttpClient() if aiohttp else None,
            )
            for _ in range(shards)
        ]
        sems = [asyncio.Semaphore(max(1, conc // shards)) for _ in range(shards)]

        async def one(i: int) -> str:
            async with sems[i % shards]:
                r = await clients[i % shards].chat.completions.create(
                    model="stub", messages=[{"role": "user", "content": f"q{i}"}]
                )
                return r.choices[0].message.content or ""

        try:
            replies = await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            for client in clients:
                await client.close()
        return sum(r == "ok" for r in replies)

    return asyncio.run(main())


def broker(base_url: str, n: int, conc: int, env: str = "inprocess") -> int:
    cell = (
        "```repl\n"
        f"r = llm_query_batched([f'q{{i}}' for i in range({n})])\n"
        "FINAL(str(sum(x == 'ok' for x in r)))\n```"
    )
    sub = openai_lm.create("stub", base_url=base_url, api_key="k", max_retries=0)
    rlm = RLM(
        ScriptedLM([cell]),
        sub,
        environment=env,
        max_concurrency=conc,
        limits=Limits(cell_timeout_s=600),
    )
    result = rlm.completion("count", context="c")
    return int(result.answer or 0)


def rlms(base_url: str, n: int, conc: int) -> int:
    """rlms 0.1.x: the root model scripted offline, its depth-1 client real. rlms fixes the
    batch concurrency at 16 (``LMHandler(batch_max_concurrent=16)``, not an RLM option); we
    raise it to ``conc`` so both sides run at the same concurrency."""
    import rlm.core.rlm as rlm_core
    from rlm.clients import get_client as real_get_client
    from rlm.clients.base_lm import BaseLM
    from rlm.core import lm_handler
    from rlm.core.types import ModelUsageSummary, UsageSummary

    script = [
        "```repl\n"
        f"r = llm_query_batched([f'q{{i}}' for i in range({n})])\n"
        "answer['content'] = str(sum(x == 'ok' for x in r))\nanswer['ready'] = True\n```"
    ]

    class Scripted(BaseLM):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(model_name="scripted")

        def completion(self, prompt: Any) -> str:
            return script[0]

        async def acompletion(self, prompt: Any) -> str:
            return script[0]

        def get_usage_summary(self) -> Any:
            return UsageSummary({"scripted": ModelUsageSummary(1, 0, 0)})

        def get_last_usage(self) -> Any:
            return ModelUsageSummary(1, 0, 0)

    def get_client(backend: Any, kwargs: dict[str, Any]) -> Any:
        if kwargs.get("model_name") == "scripted":
            return Scripted()
        return real_get_client(backend, kwargs)

    init = lm_handler.LMHandler.__init__
    if not getattr(init, "_patched", False):

        def patched(self: Any, *a: Any, **kw: Any) -> None:
            kw["batch_max_concurrent"] = conc
            init(self, *a, **kw)

        patched._patched = True  # type: ignore[attr-defined]
        lm_handler.LMHandler.__init__ = patched  # type: ignore[method-assign]
    rlm_core.get_client = get_client  # type: ignore[attr-defined]
    peer = rlm_core.RLM(
        backend="openai",
        backend_kwargs={"model_name": "scripted"},
        other_backends=["openai"],
        other_backend_kwargs=[
            {"model_name": "stub", "base_url": base_url, "api_key": "k", "max_retries": 0}
        ],
        environment="local",
        max_iterations=3,
    )
    result = peer.completion("c", root_prompt="count")
    return int(str(result.response))


PARTS = ("latency", "cpu", "big_prompts")

# -- workloads -------------------------------------------------------------------------------


def workload(n: int, delay: float, conc: int, *, repeats: int, with_rlms: bool) -> dict[str, Any]:
    server = Server(delay)
    methods: dict[str, Callable[[], int]] = {
        "bare_asyncopenai": lambda: bare(server.base_url, n, conc),
        "bare_asyncopenai_4_pools": lambda: bare(server.base_url, n, conc, shards=4),
        "bare_asyncopenai_aiohttp": lambda: bare(server.base_url, n, conc, aiohttp=True),
        "recursor_inprocess": lambda: broker(server.base_url, n, conc),
        "recursor_subprocess": lambda: broker(server.base_url, n, conc, "subprocess"),
    }
    if with_rlms:
        methods["rlms"] = lambda: rlms(server.base_url, n, conc)
    try:
        for fn in methods.values():  # warm imports, clients and the server's threads
            fn()
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in methods}
        for _ in range(repeats):
            for key, fn in methods.items():
                runs[key].append(timed(fn, n))
    finally:
        server.close()
    ideal = n * delay / conc
    out: dict[str, Any] = {
        "prompts": n,
        "server_delay_s": delay,
        "concurrency": conc,
        "ideal_s": round(ideal, 3),
        "ideal_whole_waves_s": round(-(-n // conc) * delay, 3),
        "methods": {},
    }
    for key, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        out["methods"][key] = {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "cpu_ms_per_request": round(cpu / n * 1000, 3),
            "x_ideal": round(wall / ideal, 3),
        }
    m = out["methods"]
    base = m["bare_asyncopenai"]
    out["ratios"] = {
        f"{k}_over_bare": {
            "wall": round(v["wall_s"] / base["wall_s"], 3),
            "cpu": round(v["cpu_s"] / base["cpu_s"], 3),
        }
        for k, v in m.items()
        if not k.startswith("bare_")
    }
    aio = m["bare_asyncopenai_aiohttp"]
    out["ratios"]["recursor_inprocess_over_bare_aiohttp"] = {
        "wall": round(m["recursor_inprocess"]["wall_s"] / aio["wall_s"], 3),
        "cpu": round(m["recursor_inprocess"]["cpu_s"] / aio["cpu_s"], 3),
    }
    if "rlms" in m:
        ours = m["recursor_inprocess"]
        out["ratios"]["rlms_over_recursor_inprocess"] = {
            "wall": round(m["rlms"]["wall_s"] / ours["wall_s"], 3),
            "cpu": round(m["rlms"]["cpu_s"] / ours["cpu_s"], 3),
        }
    return out


def big_prompts(sizes_mb: list[int], repeats: int, env: str) -> dict[str, Any]:
    """Seconds from ``llm_query(context)`` in a cell to its reply, minus nothing: the model
    answers at once, so this is the broker's path (and the REPL crossing) for a prompt that big."""
    cell = (
        "```repl\nimport time\nt0 = time.perf_counter()\nr = llm_query(context)\n"
        "FINAL(repr(time.perf_counter() - t0) if r == 'ok' else r)\n```"
    )
    out: dict[str, Any] = {}
    for mb in sizes_mb:
        context = "x" * (mb * 1_000_000)
        times = []
        for _ in range(repeats):
            rlm = RLM(
                ScriptedLM([cell]),
                FunctionLM(lambda chat: "ok"),
                environment=env,
                limits=Limits(cell_timeout_s=120),
            )
            answer = rlm.completion("q", context=context).answer or ""
            times.append(float(answer))
        med = statistics.median(times)
        out[f"{mb}MB"] = {"s": round(med, 4), "s_per_10MB": round(med / mb * 10, 4)}
    return out


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--no-rlms", action="store_true")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to run"
    )
    args = parser.parse_args()
    with_rlms = not args.no_rlms and bool({"latency", "cpu"} & set(args.parts))
    rlms_version: str | None = None
    if with_rlms:
        try:
            from importlib.metadata import version

            import rlm.core.rlm  # noqa: F401

            rlms_version = version("rlms")
        except Exception as exc:
            with_rlms, rlms_version = False, f"skipped: {type(exc).__name__}: {exc}"
    scale = 10 if args.quick else 1
    report: dict[str, Any] = {
        "benchmark": "fanout",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "setup": (
            "stub OpenAI-compatible server (recursor.lm.stub_server, stdlib "
            "ThreadingHTTPServer) in a separate process via sys.executable; clients use the "
            "official openai SDK over HTTP/1.1 keep-alive on 127.0.0.1 (httpx2; aiohttp for "
            "bare_asyncopenai_aiohttp and for recursor, whose async path uses the SDK's "
            "aiohttp transport when installed), SDK retries off; cpu_s is this (client) "
            "process's CPU time; medians of the repeats, methods interleaved; rlms runs with "
            "its LMHandler batch concurrency raised from its fixed 16 to the same concurrency"
        ),
        "rlms_version": rlms_version,
        "sdk_versions": {name: _version(name) for name in ("openai", "httpx2", "aiohttp")},
        "targets": {
            "latency": "recursor wall <= 1.15 x ideal",
            "cpu": "recursor / bare <= 1.1",
            "big_prompts": "linear, <= 0.1 s per 10 MB",
        },
    }
    if "latency" in args.parts:
        report["latency"] = workload(
            400 // scale, 0.5, 64, repeats=args.repeats, with_rlms=with_rlms
        )
    if "cpu" in args.parts:
        report["cpu"] = workload(1000 // scale, 0.05, 64, repeats=args.repeats, with_rlms=with_rlms)
    if "big_prompts" in args.parts:
        report["big_prompts"] = {
            env: big_prompts([1, 10] if args.quick else [1, 10, 50], args.repeats, env)
            for env in ("inprocess", "subprocess")
        }
    print(json.dumps(report, indent=2))
    if not args.quick:
        out = Path(__file__).parent / "results" / "fanout.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_merged(out, report, args.parts)


def write_merged(out: Path, report: dict[str, Any], parts: list[str]) -> None:
    """Write ``report``, keeping from the existing file the parts this run did not measure
    (and its rlms version, when this run did not look at rlms)."""
    merged: dict[str, Any] = {}
    if out.exists() and set(parts) != set(PARTS):
        try:
            merged = json.loads(out.read_text())
        except ValueError:
            merged = {}
        if not ({"latency", "cpu"} & set(parts)):
            report.pop("rlms_version", None)
    merged.update(report)
    out.write_text(json.dumps(merged, indent=2) + "\n")


if __name__ == "__main__":
    main()
