"""List prices and context windows of common hosted models.

Prices are USD per million tokens at the providers' standard (non-batch, non-priority) rates,
as published by OpenAI and Anthropic and cross-checked against the table that ships with
litellm 1.106. Long-context surcharges (e.g. Sonnet above 200k input tokens) are left out.

Prompt caching: tokens read from a provider's cache are billed at a fraction of the input rate,
and Anthropic bills tokens written into it (5-minute cache) at 1.25x; :func:`lookup` fills
these in (``Pricing.cached_input_per_mtok``, ``cache_write_per_mtok``) from the ratios below,
the providers' published ones (cross-checked with litellm 1.110's table). A model whose cached
rate is not known gets ``None`` there: its cached tokens are billed at the full rate.

An unknown model gets ``None``, never 0: a cost we do not know must not look free
(see :mod:`recursor.usage`). Model names are matched exactly first, then with a dated suffix
(``-2024-07-18``, ``-20250929``) or ``-latest`` removed, so pinned snapshots find their family —
except where a snapshot was priced differently (``gpt-4o-2024-05-13``), which has its own row.

``context_window`` is the most *input* tokens a model accepts (for GPT-5, 272k of its 400k total,
the rest being reserved for output), which is what a caller fitting a prompt needs.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TypeVar

from recursor.usage import Pricing

_T = TypeVar("_T")

_P = Pricing

_OPENAI: dict[str, Pricing] = {
    # GPT-5 family
    "gpt-5": _P(1.25, 10.00),
    "gpt-5-mini": _P(0.25, 2.00),
    "gpt-5-nano": _P(0.05, 0.40),
    "gpt-5-chat": _P(1.25, 10.00),
    "gpt-5-pro": _P(15.00, 120.00),
    "gpt-5.1": _P(1.25, 10.00),
    "gpt-5.1-chat": _P(1.25, 10.00),
    "gpt-5.2": _P(1.75, 14.00),
    "gpt-5.2-chat": _P(1.75, 14.00),
    "gpt-5.4": _P(2.50, 15.00),
    "gpt-5.4-mini": _P(0.75, 4.50),
    "gpt-5.4-nano": _P(0.20, 1.25),
    "gpt-5.5": _P(5.00, 30.00),
    # GPT-4.1 / 4o
    "gpt-4.1": _P(2.00, 8.00),
    "gpt-4.1-mini": _P(0.40, 1.60),
    "gpt-4.1-nano": _P(0.10, 0.40),
    "gpt-4o": _P(2.50, 10.00),
    "gpt-4o-2024-05-13": _P(5.00, 15.00),  # the first 4o snapshot kept its launch price
    "gpt-4o-mini": _P(0.15, 0.60),
    "chatgpt-4o": _P(5.00, 15.00),
    # reasoning models
    "o1": _P(15.00, 60.00),
    "o1-mini": _P(1.10, 4.40),
    "o1-pro": _P(150.00, 600.00),
    "o3": _P(2.00, 8.00),
    "o3-pro": _P(20.00, 80.00),
    "o3-mini": _P(1.10, 4.40),
    "o4-mini": _P(1.10, 4.40),
    # older, still served
    "gpt-4-turbo": _P(10.00, 30.00),
    "gpt-4": _P(30.00, 60.00),
    "gpt-3.5-turbo": _P(0.50, 1.50),
}

_ANTHROPIC: dict[str, Pricing] = {
    "claude-opus-4-7": _P(5.00, 25.00),
    "claude-opus-4-6": _P(5.00, 25.00),
    "claude-opus-4-5": _P(5.00, 25.00),
    "claude-opus-4-1": _P(15.00, 75.00),
    "claude-opus-4": _P(15.00, 75.00),
    "claude-opus-4-0": _P(15.00, 75.00),
    "claude-sonnet-4-6": _P(3.00, 15.00),
    "claude-sonnet-4-5": _P(3.00, 15.00),
    "claude-sonnet-4": _P(3.00, 15.00),
    "claude-sonnet-4-0": _P(3.00, 15.00),
    "claude-haiku-4-5": _P(1.00, 5.00),
    "claude-3-7-sonnet": _P(3.00, 15.00),
    "claude-3-5-sonnet": _P(3.00, 15.00),
    "claude-3-5-haiku": _P(0.80, 4.00),
    "claude-3-opus": _P(15.00, 75.00),
    "claude-3-haiku": _P(0.25, 1.25),
}

_PRICES: dict[str, dict[str, Pricing]] = {"openai": _OPENAI, "anthropic": _ANTHROPIC}

_K = 1000
_OPENAI_WINDOWS: dict[str, int] = {
    "gpt-5": 272_000,
    "gpt-5-mini": 272_000,
    "gpt-5-nano": 272_000,
    "gpt-5-chat": 128_000,
    "gpt-5-pro": 272_000,
    "gpt-5.1": 272_000,
    "gpt-5.1-chat": 128_000,
    "gpt-5.2": 272_000,
    "gpt-5.2-chat": 128_000,
    "gpt-5.4": 1_050_000,
    "gpt-5.4-mini": 272_000,
    "gpt-5.4-nano": 272_000,
    "gpt-5.5": 1_050_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "gpt-4o": 128 * _K,
    "gpt-4o-2024-05-13": 128 * _K,
    "gpt-4o-mini": 128 * _K,
    "chatgpt-4o": 128 * _K,
    "o1": 200 * _K,
    "o1-mini": 128 * _K,
    "o1-pro": 200 * _K,
    "o3": 200 * _K,
    "o3-pro": 200 * _K,
    "o3-mini": 200 * _K,
    "o4-mini": 200 * _K,
    "gpt-4-turbo": 128 * _K,
    "gpt-4": 8192,
    "gpt-3.5-turbo": 16385,
}

# Sonnet 4/4.5 reach 1M tokens only behind a beta header, which our backend does not send.
_ANTHROPIC_WINDOWS: dict[str, int] = {
    **{name: 200 * _K for name in _ANTHROPIC},
    "claude-opus-4-7": 1_000_000,
    "claude-opus-4-6": 1_000_000,
    "claude-sonnet-4-6": 1_000_000,
}

_WINDOWS: dict[str, dict[str, int]] = {"openai": _OPENAI_WINDOWS, "anthropic": _ANTHROPIC_WINDOWS}

# "-2024-07-18" (OpenAI), "-20250929" (Anthropic), "-0613" (old OpenAI), "-latest" (aliases)
_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")


def _candidates(provider: str, model: str) -> list[str]:
    """Names to try, most specific first."""
    name = model.strip().lower()
    # "openai/gpt-4o" (OpenRouter, litellm) names the same model as "gpt-4o"
    prefix, sep, rest = name.partition("/")
    if sep and prefix == provider:
        name = rest
    names = [name]
    stripped = _SUFFIX.sub("", name)
    if stripped != name:
        names.append(stripped)
    return names


def _find(table: dict[str, dict[str, _T]], provider: str, model: str) -> _T | None:
    rows = table.get(provider.lower())
    if rows is None:
        return None
    for name in _candidates(provider.lower(), model):
        if name in rows:
            return rows[name]
    return None


#: cached-input rate as a fraction of the input rate, by OpenAI model family (longest prefix
#: wins); families not listed (gpt-4-turbo, gpt-3.5, the -pro models) get no discount
_OPENAI_CACHED = {
    "gpt-5": 0.1,
    "gpt-5-pro": None,
    "gpt-4.1": 0.25,
    "gpt-4o": 0.5,
    "chatgpt-4o": None,
    "o1": 0.5,
    "o1-pro": None,
    "o1-mini": 0.5,
    "o3": 0.25,
    "o3-pro": None,
    "o3-mini": 0.5,
    "o4-mini": 0.25,
}
#: Anthropic: cache reads at 0.1x the input rate, 5-minute cache writes at 1.25x
_ANTHROPIC_READ, _ANTHROPIC_WRITE = 0.1, 1.25


def _with_cache_rates(provider: str, model: str, price: Pricing) -> Pricing:
    rate = price.input_per_mtok
    if provider == "anthropic":
        return replace(
            price,
            cached_input_per_mtok=rate * _ANTHROPIC_READ,
            cache_write_per_mtok=rate * _ANTHROPIC_WRITE,
        )
    if provider == "openai":
        name = _candidates(provider, model)[-1]
        family = max((k for k in _OPENAI_CACHED if name.startswith(k)), key=len, default=None)
        ratio = None if family is None else _OPENAI_CACHED[family]
        if ratio is not None:
            return replace(price, cached_input_per_mtok=rate * ratio)
    return price


def lookup(provider: str, model: str) -> Pricing | None:
    """The list price of ``provider``'s ``model`` (with its prompt-cache rates when known),
    or ``None`` when we do not know it."""
    price = _find(_PRICES, provider, model)
    if price is None:
        return None
    return _with_cache_rates(provider.lower(), model, price)


def context_window(provider: str, model: str) -> int | None:
    """How many input tokens ``provider``'s ``model`` accepts, or ``None`` when unknown."""
    return _find(_WINDOWS, provider, model)


def known_models(provider: str) -> list[str]:
    """The model names the price table holds for ``provider`` (for docs and error messages)."""
    return sorted(_PRICES.get(provider.lower(), {}))
