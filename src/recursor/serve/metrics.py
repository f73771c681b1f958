"""The server's Prometheus metrics, in a registry of its own (two apps in one process, as in
tests, do not collide in the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: seconds; from a stub's milliseconds to a long RLM run
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "recursor_runs", "Runs ended, by state and kind", ["state", "kind"], registry=r
        )
        self.active = Gauge("recursor_runs_active", "Runs in flight", registry=r)
        self.tokens = Counter(
            "recursor_tokens", "Tokens over whole trees", ["direction"], registry=r
        )
        self.cost = Counter("recursor_cost_usd", "USD over whole trees (priced calls)", registry=r)
        self.latency = Histogram(
            "recursor_run_seconds", "Run wall time", ["kind"], buckets=_BUCKETS, registry=r
        )
        self.sandbox_starts = Counter(
            "recursor_sandbox_starts", "REPLs opened (one per run node)", registry=r
        )
        self.rejected = Counter(
            "recursor_requests_rejected", "Requests refused, by reason", ["reason"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
