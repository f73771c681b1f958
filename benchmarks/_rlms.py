"""Driving the official ``rlms`` package offline, for side-by-side benchmarks.

rlms builds a model client per completion from a backend name; we hand it a scripted client
(no network) whose replies follow rlms's own protocol. Import errors propagate: callers report
the peer as skipped with the reason.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any


def rlms_version() -> str:
    return version("rlms")


def make_rlms(script: list[str], *, log_dir: Path | None = None, max_iterations: int = 5) -> Any:
    """An ``rlm.core.rlm.RLM`` whose root model replies with ``script`` in order (the last
    reply repeats), on rlms's default ``local`` environment."""
    import rlm.core.rlm as rlm_core
    from rlm.clients.base_lm import BaseLM
    from rlm.core.types import ModelUsageSummary, UsageSummary
    from rlm.logger import RLMLogger

    class ScriptedClient(BaseLM):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(model_name="scripted")
            self.calls = 0

        def completion(self, prompt: Any) -> str:
            reply = script[min(self.calls, len(script) - 1)]
            self.calls += 1
            return reply

        async def acompletion(self, prompt: Any) -> str:
            return self.completion(prompt)

        def get_usage_summary(self) -> Any:
            return UsageSummary({"scripted": ModelUsageSummary(self.calls, 0, 0)})

        def get_last_usage(self) -> Any:
            return ModelUsageSummary(1, 0, 0)

    rlm_core.get_client = lambda backend, kwargs: ScriptedClient()  # type: ignore[attr-defined]
    return rlm_core.RLM(
        backend="openai",
        backend_kwargs={"model_name": "scripted"},
        environment="local",
        max_iterations=max_iterations,
        logger=RLMLogger(log_dir=str(log_dir)) if log_dir else None,
    )


#: rlms ends through its answer dict; this cell answers with the context's length
RLMS_FINISH = "```repl\nanswer['content'] = str(len(context))\nanswer['ready'] = True\n```"
