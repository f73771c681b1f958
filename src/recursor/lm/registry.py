"""``provider:model`` strings to LM objects, importing a backend only when it is named."""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from recursor.errors import ConfigurationError
from recursor.lm.base import LM, ChatModel, ClosableLM

#: provider prefix -> (module holding ``create(model: str) -> LM``, the extra that installs it)
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "openai": ("recursor.lm.openai", "openai"),
    "anthropic": ("recursor.lm.anthropic", "anthropic"),
    "litellm": ("recursor.lm.litellm", "litellm"),
    "local": ("recursor.lm.local", "local"),
}

#: what ``RLM()`` uses when no model is configured: the embedded offline model
DEFAULT_MODEL = "local:qwen2.5-coder-1.5b"


class _Factory(Protocol):
    def create(self, model: str) -> ClosableLM: ...


def resolve_lm(spec: str | LM) -> LM:
    """An LM object for ``spec``: an LM is returned as it is; a string names ``provider:model``.

    An object with ``name``, ``complete`` and ``acomplete`` but no ``profile`` is taken too: the
    core reads every model's profile through :func:`recursor.lm.profile_of`, which gives such
    an object the documented default.
    """
    if not isinstance(spec, str):
        if isinstance(spec, ChatModel):
            return spec
        raise ConfigurationError(f"not a model: {spec!r} (want an LM object or 'provider:model')")
    return create_lm(spec)


def create_lm(spec: str) -> ClosableLM:
    """A new backend object for ``provider:model``; whoever asked for it closes it."""
    provider, sep, model = spec.partition(":")
    if not sep or not model:
        raise ConfigurationError(
            f"model {spec!r} is not of the form 'provider:model'; providers: {', '.join(PROVIDERS)}"
        )
    if provider not in PROVIDERS:
        raise ConfigurationError(
            f"unknown provider {provider!r} in {spec!r}; known: {', '.join(PROVIDERS)}"
        )
    module_name, extra = PROVIDERS[provider]
    try:
        module = cast(_Factory, importlib.import_module(module_name))
    except ImportError as exc:
        hint = f' (pip install "recursor[{extra}]")' if extra else ""
        raise ConfigurationError(f"provider {provider!r} is not installed{hint}: {exc}") from exc
    return module.create(model)
