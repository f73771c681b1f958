"""The price and context-window tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recursor.lm.pricing import context_window, known_models, lookup
from recursor.usage import Pricing


@pytest.mark.parametrize(
    ("provider", "model", "price"),
    [
        ("openai", "gpt-5", (1.25, 10.0)),
        ("openai", "gpt-5-mini", (0.25, 2.0)),
        ("openai", "gpt-5-nano", (0.05, 0.40)),
        ("openai", "gpt-4.1", (2.0, 8.0)),
        ("openai", "gpt-4.1-mini", (0.40, 1.60)),
        ("openai", "gpt-4.1-nano", (0.10, 0.40)),
        ("openai", "gpt-4o", (2.50, 10.0)),
        ("openai", "gpt-4o-mini", (0.15, 0.60)),
        ("openai", "o3", (2.0, 8.0)),
        ("openai", "o4-mini", (1.10, 4.40)),
        ("anthropic", "claude-opus-4-1", (15.0, 75.0)),
        ("anthropic", "claude-opus-4-5", (5.0, 25.0)),
        ("anthropic", "claude-sonnet-4-5", (3.0, 15.0)),
        ("anthropic", "claude-haiku-4-5", (1.0, 5.0)),
        ("anthropic", "claude-3-7-sonnet", (3.0, 15.0)),
        ("anthropic", "claude-3-5-haiku", (0.80, 4.0)),
    ],
)
def test_known_prices(provider: str, model: str, price: tuple[float, float]) -> None:
    found = lookup(provider, model)
    assert found is not None
    assert (found.input_per_mtok, found.output_per_mtok) == price


@pytest.mark.parametrize(
    ("provider", "dated", "family"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai", "o3-2025-04-16", "o3"),
        ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("openai", "gpt-5-chat-latest", "gpt-5-chat"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
    ],
)
def test_dated_snapshots_find_their_family(provider: str, dated: str, family: str) -> None:
    assert lookup(provider, dated) == lookup(provider, family) is not None
    assert context_window(provider, dated) == context_window(provider, family) is not None


def test_a_snapshot_with_its_own_price_keeps_it() -> None:
    assert lookup("openai", "gpt-4o-2024-05-13") == Pricing(5.0, 15.0, 2.5)
    assert lookup("openai", "gpt-4o-2024-08-06") == Pricing(2.5, 10.0, 1.25)


@pytest.mark.parametrize(
    ("provider", "model", "read", "write"),
    [
        ("openai", "gpt-5-mini", 0.025, None),  # 10%
        ("openai", "gpt-4.1", 0.5, None),  # 25%
        ("openai", "gpt-4o-mini", 0.075, None),  # 50%
        ("openai", "o4-mini", 0.275, None),
        ("openai", "gpt-5-pro", None, None),  # no cached rate published: full rate
        ("openai", "gpt-3.5-turbo", None, None),
        ("anthropic", "claude-sonnet-4-5-20250929", 0.3, 3.75),  # 0.1x read, 1.25x write
    ],
)
def test_prompt_cache_rates(
    provider: str, model: str, read: float | None, write: float | None
) -> None:
    found = lookup(provider, model)
    assert found is not None
    assert found.cached_input_per_mtok == (None if read is None else pytest.approx(read))
    assert found.cache_write_per_mtok == (None if write is None else pytest.approx(write))


def test_names_are_matched_case_insensitively_and_with_a_provider_prefix() -> None:
    assert lookup("openai", "GPT-4o-Mini") == lookup("openai", "gpt-4o-mini")
    assert lookup("OpenAI", "openai/gpt-4o-mini") == lookup("openai", "gpt-4o-mini")
    # another provider's prefix names a different offering: not ours to price
    assert lookup("openai", "azure/gpt-4o-mini") is None


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "qwen2.5-coder-7b"),
        ("openai", "gpt-4o-mini-tts"),  # a different model that merely starts the same
        ("openai", ""),
        ("anthropic", "gpt-4o"),
        ("mistral", "mistral-large"),
        ("local", "qwen2.5-coder-1.5b"),
    ],
)
def test_unknown_is_none_never_zero(provider: str, model: str) -> None:
    assert lookup(provider, model) is None
    assert context_window(provider, model) is None


def test_context_windows() -> None:
    assert context_window("openai", "gpt-4o-mini") == 128_000
    assert context_window("openai", "gpt-4.1") == 1_047_576
    assert context_window("openai", "gpt-5") == 272_000  # input share of the 400k window
    assert context_window("openai", "o3") == 200_000
    assert context_window("anthropic", "claude-sonnet-4-5-20250929") == 200_000


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_every_priced_model_has_a_positive_price_and_a_window(provider: str) -> None:
    models = known_models(provider)
    assert len(models) >= 10
    for model in models:
        price = lookup(provider, model)
        assert price is not None
        assert price.input_per_mtok > 0
        assert price.output_per_mtok >= price.input_per_mtok
        window = context_window(provider, model)
        assert window is not None and window >= 8192


@given(provider=st.sampled_from(["openai", "anthropic", "x"]), model=st.text(max_size=40))
def test_lookup_never_raises_and_never_prices_at_zero(provider: str, model: str) -> None:
    price = lookup(provider, model)
    assert price is None or (price.input_per_mtok > 0 and price.output_per_mtok > 0)
    window = context_window(provider, model)
    assert window is None or window > 0
