"""The public front: :class:`RLM`, its result, and the two thin drivers of the engine."""

from __future__ import annotations

import os
from typing import Literal, TypedDict, Unpack

from recursor import prompts
from recursor._closing import Closing
from recursor._lifetime import Owned
from recursor._threads import in_daemon_thread
from recursor.broker import BrokerOptions, DepthPlan, ModelLimits, RetryPolicy
from recursor.context import ContextInput
from recursor.errors import ConfigurationError
from recursor.limits import Limits
from recursor.lm.base import LM
from recursor.lm.profile import profile_of
from recursor.lm.registry import DEFAULT_MODEL
from recursor.result import RLMResult
from recursor.sandbox.base import Environment
from recursor.trace import Sink
from recursor.trace.redact import register_secrets_of
from recursor.tree import Tree, drive_async

__all__ = ["CHARS_PER_TOKEN", "RLM", "UNKNOWN_SUB_CHARS", "RLMOptions", "RLMResult"]


#: characters per token when the root is told a sub-model's capacity: fewer than the broker's
#: 4-a-token estimate, so text cut to the advertised size is not refused for the window, and
#: leaves room in the real tokenizer's count (code and digits tokenize denser than prose)
CHARS_PER_TOKEN = 3
#: the capacity advertised for a sub-model whose window nobody knows
UNKNOWN_SUB_CHARS = 100_000


class RLMOptions(TypedDict, total=False):
    """The keywords of :class:`RLM` after ``root, sub, max_depth, environment, limits``; each
    defaults as noted, and the class docstring says what they do."""

    #: per-depth models, by depth (default: ``sub`` below the root)
    models_by_depth: dict[int, LM | str] | None
    #: named models the REPL can pick by name
    models: dict[str, LM | str] | None
    #: model calls at once over the whole tree (default 16)
    max_concurrency: int
    #: per-model slots and rate limits, by model name
    model_limits: dict[str, ModelLimits] | None
    #: retries of 429/5xx/timeouts (default: ``RetryPolicy()``)
    retry: RetryPolicy | None
    #: a bound on one sub-call (default: none)
    subcall_timeout_s: float | None
    #: "string" lists a failed batch item as ``[error: ...]``; "raise" raises in the cell
    subcall_errors: Literal["string", "raise"]
    #: True: per run, in memory; a path: also a shared SQLite file; False: off (default True)
    cache: bool | str | os.PathLike[str]
    #: input-token windows overriding the models' profiles, by model name
    context_windows: dict[str, int] | None
    #: raise the run's error instead of returning it in the result (default False)
    raise_errors: bool
    #: trace sinks; the caller's, flushed not closed
    sinks: list[Sink] | None
    #: "auto" follows the root model's profile (default "auto")
    prompt_style: Literal["auto", "full", "compact"]
    #: the prompt templates' version: "v2" (default; helpers, examples by question) or "v1"
    prompt_version: str


class RLM(Closing):
    """A Recursive Language Model: ``completion(query, context)`` like one LM call.

    ``max_depth``: 0 is REPL only; 1 adds ``llm_query`` on ``sub``; >= 2 makes ``rlm_query``
    spawn child RLMs (on the model for their depth: ``models_by_depth`` or ``sub``).

    Sub-calls (:mod:`recursor.broker`): at most ``max_concurrency`` model calls at once over the
    tree; ``model_limits`` adds per-model slots and requests/tokens-per-minute limits
    (:class:`~recursor.broker.ModelLimits`); ``retry`` retries 429/5xx/timeouts with backoff
    (:class:`~recursor.broker.RetryPolicy`); ``subcall_timeout_s`` bounds one call;
    ``subcall_errors="raise"`` makes a batch with a failed item raise in the cell instead of
    listing ``[error: ...]`` strings; ``cache`` answers identical sub-calls once (True: per run,
    in memory; a path: also a SQLite file shared across runs; False: off);
    ``context_windows`` overrides the input-token windows of the models' profiles, by model
    name (:func:`recursor.lm.profile_of`); the root is told each sub-model's capacity from it.

    Lifetime: ``with RLM(...) as rlm:`` (or ``async with``, or :meth:`close`/:meth:`aclose`)
    releases what the RLM created: the environment it made from a name (its spare worker,
    fork server) and the models it made from ``provider:model`` strings (SDK clients, a loaded
    local model). Objects the caller passed in (LMs, an Environment, sinks) stay the caller's;
    their sinks are flushed, not closed. A closed RLM raises :class:`~recursor.errors.RLMClosed`.
    """

    def __init__(
        self,
        root: LM | str | None = None,
        sub: LM | str | None = None,
        *,
        max_depth: int = 1,
        environment: str | Environment = "subprocess",
        limits: Limits | None = None,
        **options: Unpack[RLMOptions],
    ) -> None:
        unknown = sorted(set(options) - set(RLMOptions.__annotations__))
        if unknown:  # what Python says of a keyword the signature lacks
            raise TypeError(f"RLM() got unexpected keyword argument(s): {', '.join(unknown)}")
        max_concurrency = options.get("max_concurrency", 16)
        self.plan = DepthPlan(max_depth)
        #: what this object made from strings, and so releases in close()
        self._owned = Owned()
        self.broker_options = BrokerOptions(
            max_concurrency=max_concurrency,
            model_limits=dict(options.get("model_limits") or {}),
            retry=options.get("retry") or RetryPolicy(),
            subcall_timeout_s=options.get("subcall_timeout_s"),
            subcall_errors=options.get("subcall_errors", "string"),
            cache=options.get("cache", True),
            context_windows=dict(options.get("context_windows") or {}),
        )
        self.root = self._owned.lm(root if root is not None else DEFAULT_MODEL)
        self.sub = self.root if sub is None else self._owned.lm(sub)
        self.models_by_depth = {
            d: self._owned.lm(m) for d, m in (options.get("models_by_depth") or {}).items()
        }
        self.models = {k: self._owned.lm(m) for k, m in (options.get("models") or {}).items()}
        self.max_depth = max_depth
        self.environment = self._owned.environment(
            environment, workers=self.plan.max_workers(max_concurrency)
        )
        self.limits = limits or Limits()
        self.max_concurrency = max_concurrency
        self.raise_errors = options.get("raise_errors", False)
        self.sinks = list(options.get("sinks") or [])
        # Keys the model objects hold are masked in every trace line written (trace/redact.py).
        register_secrets_of(
            [self.root, self.sub, *self.models_by_depth.values(), *self.models.values()]
        )
        self.prompt_style: Literal["auto", "full", "compact"] = options.get("prompt_style", "auto")
        self.prompt_version = options.get("prompt_version", prompts.PROMPT_VERSION)
        if self.prompt_version not in prompts.VERSIONS:
            known = ", ".join(prompts.VERSIONS)
            raise ConfigurationError(
                f"unknown prompt_version {self.prompt_version!r}; known: {known}"
            )

    # -- lifetime (what it releases: recursor._lifetime; with/async with: recursor._closing) ----
    def close(self) -> None:
        """Release what this RLM created; stop its running completions. Idempotent."""
        self._owned.close(self.sinks)

    async def aclose(self) -> None:
        """:meth:`close` from async code (also closes its models' async clients of this loop)."""
        await self._owned.aclose(self.sinks)

    def style_for(self, lm: LM) -> Literal["full", "compact"]:
        """ "auto": the style of the model's profile (the compact one for small local models,
        which read a long prompt slowly)."""
        if self.prompt_style != "auto":
            return self.prompt_style
        return profile_of(lm).prompt_style

    def sub_chars(self, lm: LM) -> int:
        """Characters ``lm`` reads per prompt, as the root is told: its window (the override
        or its profile's) at :data:`CHARS_PER_TOKEN`, else :data:`UNKNOWN_SUB_CHARS`."""
        window = self.broker_options.context_window(lm)
        return UNKNOWN_SUB_CHARS if window is None else window * CHARS_PER_TOKEN

    def lm_for_depth(self, depth: int) -> LM:
        if depth in self.models_by_depth:
            return self.models_by_depth[depth]
        return self.root if depth == 0 else self.sub

    # -- the two drivers ------------------------------------------------------------------------
    def completion(self, query: str, context: ContextInput = None) -> RLMResult:
        """Answer ``query`` over ``context``; blocks until the run ends."""
        tree = Tree(self)
        try:
            node = tree.node(query, context, depth=0, parent_id=None)
            outcome = node.run()
        finally:
            tree.close()
        return tree.result(node, outcome)

    async def acompletion(self, query: str, context: ContextInput = None) -> RLMResult:
        """The same run as :meth:`completion`, awaiting model calls on the event loop."""
        tree = Tree(self)
        try:
            node = tree.node(query, context, depth=0, parent_id=None)
            try:
                await in_daemon_thread(node.open)
                outcome = await drive_async(node)
            finally:
                await in_daemon_thread(node.close)
        finally:
            await in_daemon_thread(tree.close)
        return tree.result(node, outcome)
