"""Peers as bench methods: ``rlms``, the official RLM package (``pip install "recursor[peers]"``,
pinned 0.1.3), run on the same tasks and the same model as our methods.

rlms talks to models through its own OpenAI client, so it needs an OpenAI-compatible endpoint:

* ``recursor bench --base-url URL`` (or ``Models.endpoint``): rlms calls that server, and its
  usage is what rlms itself counts (rlms 0.1.3 leaves child RLMs' usage out; see DESIGN §5);
* otherwise the root model (any LM object: the embedded ``local:`` model, a scripted fake) is
  served to rlms for the length of the task by a loopback bridge
  (:class:`recursor.lm.stub_server.StubServer` whose handler calls the LM), and usage is counted
  at the bridge: every call rlms makes, children included, with the LM's own token counts.

rlms's ``llm_query`` (its depth-1 calls) goes to the sub-model when it differs from the root
(rlms's ``other_backends``), on the same server for ``--base-url`` or through a second bridge.

rlms's ``local`` environment runs the model's code in this process, unconfined (DESIGN §5):
run it only on models and tasks you trust as much as the bench itself. Anything rlms raises
(its timeout, a crash of its environment) is an :class:`Attempt` of this method with the
error, never a failure of the harness; a timeout keeps rlms's best partial answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from recursor.bench.endpoint import Endpoint
from recursor.bench.methods import Attempt, Models
from recursor.bench.task import Task
from recursor.errors import ConfigurationError
from recursor.lm.base import LM, Message
from recursor.lm.profile import profile_of
from recursor.usage import Usage

if TYPE_CHECKING:
    from recursor.lm.stub_server import StubReply


class _Bridge:
    """``lm`` served over the OpenAI wire on 127.0.0.1, usage added up per call."""

    def __init__(self, lm: LM) -> None:
        from recursor.lm.stub_server import StubServer

        self.lm = lm
        self.usage = Usage()
        self.calls = 0
        self._lock = threading.Lock()
        self.server = StubServer(self._answer, record=False)

    def _answer(self, chat: list[dict[str, str]]) -> StubReply:
        messages = cast(list[Message], [{"role": m["role"], "content": m["content"]} for m in chat])
        done = self.lm.complete(messages)
        with self._lock:
            self.usage += done.usage
            self.calls += 1
        from recursor.lm.stub_server import StubReply

        return StubReply(text=done.text, usage=(done.usage.input_tokens, done.usage.output_tokens))


@dataclass
class _Route:
    """Where rlms finds its root model and, when it differs, its depth-1 sub-model."""

    root: Endpoint
    sub: Endpoint | None
    bridges: list[_Bridge]

    def usage(self) -> Usage | None:
        if not self.bridges:
            return None
        total = Usage()
        for bridge in self.bridges:
            total += bridge.usage
        return total


@contextlib.contextmanager
def _route(models: Models) -> Iterator[_Route]:
    same = models.sub is models.root or models.sub.name == models.root.name
    if models.endpoint is not None:
        sub_model = models.sub.name.partition(":")[2] or models.sub.name
        sub = None if same else dataclasses.replace(models.endpoint, model=sub_model)
        yield _Route(models.endpoint, sub, [])
        return
    with contextlib.ExitStack() as stack:
        bridges = [_Bridge(models.root)] + ([] if same else [_Bridge(models.sub)])
        urls = [stack.enter_context(b.server).base_url for b in bridges]
        root = Endpoint(urls[0], models.root.name, "bridge")
        sub = None if same else Endpoint(urls[1], models.sub.name, "bridge")
        yield _Route(root, sub, bridges)


def _rlms_usage(completion: object, models: Models) -> Usage:
    from rlm.core.types import RLMChatCompletion  # type: ignore[import-untyped]

    assert isinstance(completion, RLMChatCompletion)
    summary = completion.usage_summary
    pricing = profile_of(models.root).pricing
    calls = sum(s.total_calls for s in summary.model_usage_summaries.values())
    tokens_in, tokens_out = summary.total_input_tokens, summary.total_output_tokens
    return Usage(
        calls=calls,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=None if pricing is None else pricing.cost(tokens_in, tokens_out),
        unpriced_calls=calls if pricing is None else 0,
    )


class Rlms:
    """The official ``rlms`` at max_depth 1 (root + ``llm_query``), environment ``local``."""

    name = "rlms"

    def run(self, task: Task, models: Models) -> Attempt:
        try:
            import rlm.core.rlm as rlm_core  # type: ignore[import-untyped]  # no type info
        except ImportError as exc:
            raise ConfigurationError(
                f'rlms is not installed (pip install "recursor[peers]"): {exc}'
            ) from exc
        with _route(models) as route, _peer_leaks_quietly():
            answer: str | None
            usage = Usage()
            try:
                done = _complete(rlm_core, route, task, models)
            except Exception as exc:  # rlms's own limits and failures: this method's result
                answer = _partial_answer(exc)
                stop, error = _stop_reason(exc), f"{type(exc).__name__}: {exc}"
            else:
                answer, stop, error = done.response, "answered", done.error
                usage = _rlms_usage(done, models)
            bridged = route.usage()
            if bridged is not None:
                # counted at the bridges: every call rlms made, its children's included
                usage = _priced(bridged, models)
        # rlms does not say which calls were root turns: all are in usage.calls, none split out
        return Attempt(answer, usage, subcalls=0, stop_reason=stop, error=error)


def _kwargs(endpoint: Endpoint) -> dict[str, str]:
    return {
        "model_name": endpoint.model,
        "base_url": endpoint.base_url,
        "api_key": endpoint.api_key,
    }


def _complete(rlm_core: Any, route: _Route, task: Task, models: Models) -> Any:
    """One rlms completion; its RLM object is dropped on return (see _peer_leaks_quietly)."""
    limits = models.limits
    sub: dict[str, Any] = {}
    if route.sub is not None:  # rlms sends depth-1 calls (llm_query) to its "other" backend
        sub = {"other_backends": ["openai"], "other_backend_kwargs": [_kwargs(route.sub)]}
    peer = rlm_core.RLM(
        backend="openai",
        backend_kwargs=_kwargs(route.root),
        **sub,
        environment="local",
        max_depth=1,
        max_iterations=limits.max_iterations,
        max_timeout=limits.timeout_s,
        max_concurrent_subcalls=models.concurrency,
    )
    return peer.completion(task.context, root_prompt=task.query)


def _priced(usage: Usage, models: Models) -> Usage:
    pricing = profile_of(models.root).pricing
    if pricing is None or usage.cost_usd is not None:
        return usage
    return Usage(
        calls=usage.calls,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=pricing.cost(usage.input_tokens, usage.output_tokens),
    )


@contextlib.contextmanager
def _peer_leaks_quietly() -> Iterator[None]:
    """rlms 0.1.3 drops its per-completion TCP server and clients without closing them; their
    ResourceWarnings are its, not the caller's: silenced here, and the garbage collected here
    (not later, in whatever code happens to run then). Note: ``catch_warnings`` is process-wide,
    so another thread's ResourceWarning during an rlms run is silenced too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


def _partial_answer(exc: BaseException) -> str | None:
    from rlm.utils import exceptions as peer_errors  # type: ignore[import-untyped]

    if isinstance(exc, peer_errors.TimeoutExceededError | peer_errors.ErrorThresholdExceededError):
        partial = exc.partial_answer
        return partial if isinstance(partial, str) else None
    return None


def _stop_reason(exc: BaseException) -> str:
    from rlm.utils import exceptions as peer_errors

    if isinstance(exc, peer_errors.TimeoutExceededError):
        return "timeout"
    if isinstance(exc, peer_errors.BudgetExceededError | peer_errors.TokenLimitExceededError):
        return "budget"
    return "error"


def endpoint_for(model_name: str, base_url: str) -> Endpoint:
    """The endpoint ``recursor bench --base-url`` names, for an ``openai:MODEL`` root."""
    provider, _, model = model_name.partition(":")
    return Endpoint(base_url, model or provider, os.environ.get("OPENAI_API_KEY", "none"))
