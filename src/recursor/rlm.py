"""The public front: :class:`RLM`, its result, and the two thin drivers of the engine."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Iterator
from typing import Any, Literal, TypedDict, Unpack

from recursor import prompts
from recursor._cancel import Cancel
from recursor._closing import Closing
from recursor._lifetime import Owned
from recursor._threads import in_daemon_thread
from recursor.broker import BrokerOptions, DepthPlan, ModelLimits, RetryPolicy
from recursor.context import ContextInput
from recursor.conversation import Conversation
from recursor.conversation import resume as _resume
from recursor.conversation.core import SessionOptions
from recursor.errors import ConfigurationError
from recursor.limits import Limits
from recursor.lm.base import LM
from recursor.lm.profile import profile_of
from recursor.lm.registry import DEFAULT_MODEL
from recursor.output import OutputSpec, TypedAnswer
from recursor.result import RLMResult
from recursor.routing.policy import Policy, load_policy
from recursor.run import arun_tree, run_tree
from recursor.sandbox.base import Environment
from recursor.streaming import astream_run, stream_run
from recursor.tools import ToolBox, ToolItem
from recursor.trace import Event, Sink
from recursor.trace.redact import register_secrets_of
from recursor.tree import Tree, Watch

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
    #: compact a root's history past this share of its model's window (default 0.8; None: never)
    compact_at: float | None
    #: the caller's functions (or :class:`~recursor.tools.Tool`, :class:`~recursor.tools.MCPTools`)
    #: model code may call by name; they run on the host
    tools: list[ToolItem] | None
    #: None (default): run at ``max_depth``; "direct", "repl", "recursive", "auto", or the path
    #: of a policy released by ``recursor route release`` (see :mod:`recursor.routing`)
    route: str | os.PathLike[str] | None
    #: corrections a typed answer (``output_type=``) may get before OutputValidationError
    max_output_retries: int
    #: the prompt templates' version: "v1" (default) or "v2" (helpers advertised, a worked
    #: example chosen by the question)
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

    Tools: ``tools=[fn, Tool(fn, name=..., timeout_s=...), MCPTools.stdio(...)]`` are host
    functions model code calls by name in every environment, with JSON arguments and results
    (:mod:`recursor.tools`); each call counts against ``Limits.max_tool_calls`` and is traced.
    MCP servers are connected here and disconnected by :meth:`close`.

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
        self.compact_at: float | None = options.get("compact_at", 0.8)
        # last: it may start MCP servers, which nothing above can then leave running
        try:
            self.tools = ToolBox(options.get("tools") or ())
        except BaseException:
            self._owned.close(self.sinks)  # a spare worker already started, models made
            raise
        self.max_output_retries = options.get("max_output_retries", 2)
        if self.max_output_retries < 0:
            raise ConfigurationError("max_output_retries must be >= 0")
        route = options.get("route")
        #: the route mode ("direct", "repl", "recursive", "auto", "policy") or None
        self.route: str | None = None
        self.policy: Policy | None = None
        if route is not None:
            if isinstance(route, str) and route in ("direct", "repl", "recursive", "auto"):
                self.route = route
            else:
                self.policy = load_policy(route)
                self.route = "policy"
        self.prompt_version = options.get("prompt_version", prompts.DEFAULT_VERSION)
        if self.prompt_version not in prompts.VERSIONS:
            known = ", ".join(prompts.VERSIONS)
            raise ConfigurationError(
                f"unknown prompt_version {self.prompt_version!r}; known: {known}"
            )

    # -- lifetime (what it releases: recursor._lifetime; with/async with: recursor._closing) ----
    def close(self) -> None:
        """Release what this RLM created; stop its running completions. Idempotent."""
        try:
            self._owned.close(self.sinks)
        finally:
            self.tools.close()

    async def aclose(self) -> None:
        """:meth:`close` from async code (also closes its models' async clients of this loop)."""
        try:
            await self._owned.aclose(self.sinks)
        finally:
            await in_daemon_thread(self.tools.close)

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

    # -- conversations (recursor.conversation) ----------------------------------------------
    def session(
        self,
        context: ContextInput = None,
        **options: Unpack[SessionOptions],
    ) -> Conversation:
        """A conversation over ``context`` whose REPL survives between asks:
        ``with rlm.session(context=big) as s: s.ask(q1); s.ask(q2); s.save("s.json")``."""
        return Conversation(self, context, **options)

    def resume(
        self,
        path: str | os.PathLike[str],
        context: ContextInput = None,
        *,
        contexts: list[ContextInput] | None = None,
        **options: Unpack[SessionOptions],
    ) -> Conversation:
        """The session saved at ``path``, its REPL rebuilt by running the recorded cells again
        with the recorded sub-call answers (no model call); ``context`` (and ``contexts``, the
        ones added later, in order) must be those recorded unless the file includes them.
        ``session.resume_report`` says which cells differed and which variables may be stale;
        the next ask's root is told too."""
        return _resume(
            self,
            os.fspath(path),
            context,
            contexts=contexts,
            **options,
        )

    # -- the two drivers ------------------------------------------------------------------------
    def _typed(self, output_type: Any) -> TypedAnswer | None:
        if output_type is None:
            return None
        return TypedAnswer(OutputSpec(output_type), self.max_output_retries)

    def _complete(
        self,
        query: str,
        context: ContextInput,
        listener: Sink | None = None,
        cancel: Cancel | None = None,
        output_type: Any = None,
    ) -> RLMResult:
        """:meth:`completion`, with a listener of its events and a scope that stops it."""
        typed = self._typed(output_type)
        if self.route is not None:
            from recursor.routing.run import run_routed

            return run_routed(self, query, context, typed, Watch(listener, cancel))
        return run_tree(Tree(self, watch=Watch(listener, cancel), typed=typed), query, context)

    def completion(
        self, query: str, context: ContextInput = None, *, output_type: Any = None
    ) -> RLMResult:
        """Answer ``query`` over ``context``; blocks until the run ends.

        ``output_type``: a pydantic model, a TypedDict or dataclass, a plain type (``int``,
        ``list[str]``) or a JSON Schema dict; the final value is validated against it (a
        mismatch is shown to the model, at most ``max_output_retries`` times) and returned as
        ``result.output``."""
        return self._complete(query, context, output_type=output_type)

    async def acompletion(
        self, query: str, context: ContextInput = None, *, output_type: Any = None
    ) -> RLMResult:
        """The same run as :meth:`completion`, awaiting model calls on the event loop."""
        return await self._acomplete(query, context, output_type=output_type)

    def stream(
        self, query: str, context: ContextInput = None, *, output_type: Any = None
    ) -> Iterator[Event]:
        """The run's events as they happen, from every level of its tree, then
        :class:`~recursor.streaming.Completed` with the result. Leaving the loop early stops
        the run (see :mod:`recursor.streaming`)."""
        return stream_run(
            lambda listener, cancel: self._complete(query, context, listener, cancel, output_type)
        )

    def astream(
        self, query: str, context: ContextInput = None, *, output_type: Any = None
    ) -> AsyncGenerator[Event, None]:
        """:meth:`stream` for ``async for``; the run is :meth:`acompletion`'s."""
        return astream_run(
            lambda listener, cancel: self._acomplete(query, context, listener, cancel, output_type)
        )

    async def _acomplete(
        self,
        query: str,
        context: ContextInput,
        listener: Sink | None = None,
        cancel: Cancel | None = None,
        output_type: Any = None,
    ) -> RLMResult:
        typed = self._typed(output_type)
        if self.route is not None:
            from recursor.routing.run import run_routed

            # the router's decision and its baselines are blocking calls: run on a thread
            return await in_daemon_thread(
                lambda: run_routed(self, query, context, typed, Watch(listener, cancel))
            )
        tree = Tree(self, watch=Watch(listener, cancel), typed=typed)
        return await arun_tree(tree, query, context)
