"""The models and sandboxes behind the profiles, built once at start and shared by every run.

An RLM per request is cheap when it is handed objects: the LM clients (connection pools, a
loaded local model) and the Environment (its spare worker, its fork server) are made here,
once, and each run's RLM only borrows them, so closing a run's RLM releases nothing shared.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import Any

from recursor.errors import ConfigurationError
from recursor.limits import Limits
from recursor.lm.base import LM, ClosableLM
from recursor.lm.registry import create_lm
from recursor.rlm import RLM
from recursor.sandbox import resolve_environment
from recursor.sandbox.base import Environment
from recursor.serve.config import ModelProfile, RLMProfile, ServeConfig
from recursor.tools import MCPTools, ToolItem


def import_tool(spec: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names (a profile's ``tools`` entry)."""
    module, _, name = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"tools: cannot import {spec!r}: {exc}") from None
    if not callable(found):
        raise ConfigurationError(f"tools: {spec!r} is not a function")
    return found  # type: ignore[no-any-return]


def _environment(profile: RLMProfile) -> Environment:
    if profile.environment == "inprocess":
        # the config validated trusted = true: the profile's owner accepts that model code
        # runs in the server, next to its keys
        from recursor.sandbox.inprocess import InProcessEnvironment

        return InProcessEnvironment(trusted=True)
    return resolve_environment(profile.environment)


class Served:
    """Every profile's objects; :meth:`close` releases them (kills spare workers)."""

    def __init__(self, config: ServeConfig, lms: dict[str, LM] | None = None) -> None:
        #: models by spec; ``lms`` lets a caller (a test, a benchmark) hand in its own objects
        self._given = dict(lms or {})
        self._made: dict[str, ClosableLM] = {}
        self.environments: dict[str, Environment] = {}
        #: each RLM profile's Python tools, imported once
        self.tools: dict[str, list[Callable[..., Any]]] = {}
        self.profiles = config.profiles
        try:
            for name, profile in config.profiles.items():
                if isinstance(profile, RLMProfile):
                    self.lm(profile.root)
                    if profile.sub:
                        self.lm(profile.sub)
                    self.environments[name] = _environment(profile)
                    self.tools[name] = [import_tool(spec) for spec in profile.tools]
                else:
                    self.lm(profile.model)
        except ConfigurationError as exc:
            self.close()
            raise ConfigurationError(f"profile {name!r}: {exc}") from None

    def lm(self, spec: str) -> LM:
        if spec in self._given:
            return self._given[spec]
        if spec not in self._made:
            self._made[spec] = create_lm(spec)
        return self._made[spec]

    def direct_model(self, name: str) -> LM:
        """The model a request to profile ``name`` goes to when it needs no RLM."""
        profile = self.profiles[name]
        return self.lm(profile.model if isinstance(profile, ModelProfile) else profile.root)

    def build_rlm(self, name: str, limits: Limits) -> RLM:
        profile = self.profiles[name]
        assert isinstance(profile, RLMProfile)
        tools: list[ToolItem] = list(self.tools[name])
        # an MCPTools belongs to one RLM (it connects when the RLM is made, closes with it)
        for server in profile.mcp:
            if server.command is not None:
                tools.append(MCPTools.stdio(server.command, server.args))
            else:
                assert server.url is not None
                tools.append(MCPTools.http(server.url))
        return RLM(
            self.lm(profile.root),
            None if profile.sub is None else self.lm(profile.sub),
            max_depth=profile.max_depth,
            environment=self.environments[name],
            limits=limits,
            max_concurrency=profile.max_concurrency,
            tools=tools,
            route=profile.route,
        )

    def close(self) -> None:
        for env in self.environments.values():
            with contextlib.suppress(Exception):  # one failed release must not keep workers
                env.close()
        for lm in self._made.values():
            with contextlib.suppress(Exception):
                lm.close()
        self.environments.clear()
        self._made.clear()
