"""Reading a model's :class:`~recursor.lm.base.LMProfile`, and the profiles of remote models.

Every backend of recursor declares its profile (``lm.profile``). :func:`profile_of` is how the
core reads it, and the one place that handles an object a user wrote with ``name``,
``complete`` and ``acomplete`` but no profile: such an object gets :func:`default_profile` of
its name, that is

* the window and list price of ``provider:model`` from :mod:`recursor.lm.pricing` when the
  name is one the table knows (``"openai:gpt-4o-mini"``), else unknown: no window is enforced
  before the call, and its cost is unknown (never $0);
* no output cap and no cache parameters (the model name alone keys the cache);
* the compact prompt for a ``local:`` name, the full one otherwise; no streaming.

``RLM(context_windows={name: tokens})`` overrides the window of any model, profiled or not
(:meth:`recursor.broker.BrokerOptions.context_window`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, cast

from recursor.lm import pricing as price_table
from recursor.lm.base import ChatModel, LMProfile, StreamingLM
from recursor.usage import Pricing

__all__ = ["LMProfile", "default_profile", "profile_of", "remote_profile", "streaming_of"]


def default_profile(name: str) -> LMProfile:
    """The profile assumed for a model named ``name`` that declares none (see the module)."""
    provider, sep, model = name.partition(":")
    if not sep:
        return LMProfile()
    return LMProfile(
        context_window=price_table.context_window(provider, model),
        pricing=price_table.lookup(provider, model),
        prompt_style="compact" if provider == "local" else "full",
    )


def profile_of(lm: ChatModel) -> LMProfile:
    """``lm``'s declared profile, or :func:`default_profile` of its name when it has none."""
    # The one probe of an LM object in recursor: a user's model may predate profiles.
    declared = getattr(lm, "profile", None)
    if isinstance(declared, LMProfile):
        return declared
    return default_profile(lm.name)


def streaming_of(lm: ChatModel) -> StreamingLM | None:
    """``lm`` as a :class:`~recursor.lm.base.StreamingLM` when its profile declares it."""
    return cast(StreamingLM, lm) if profile_of(lm).streams else None


class CallParams(Protocol):
    """The request knobs of a remote backend (:class:`recursor.lm._remote.CallOptions`)."""

    @property
    def temperature(self) -> float | None: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def extra_body(self) -> Mapping[str, Any] | None: ...


def cache_params(options: CallParams) -> dict[str, Any]:
    """The knobs of ``options`` that change a reply, as keyed by the sub-call cache."""
    params: dict[str, Any] = {}
    if options.temperature is not None:
        params["temperature"] = options.temperature
    if options.max_tokens is not None:
        params["max_tokens"] = options.max_tokens
    if options.extra_body:
        params["extra_body"] = dict(options.extra_body)
    return params


def remote_profile(
    provider: str, model: str, pricing: Pricing | None, options: CallParams
) -> LMProfile:
    """The profile of ``provider:model`` behind an HTTP API: the table's window, the given
    price, the output cap it is sent with (``None``: the provider's default)."""
    return LMProfile(
        context_window=price_table.context_window(provider, model),
        pricing=pricing,
        max_output_tokens=options.max_tokens,
        cache_params=cache_params(options),
    )
