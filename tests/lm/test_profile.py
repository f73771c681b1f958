"""LMProfile: what each backend declares, and profile_of's default for an LM without one."""

from __future__ import annotations

from recursor import RLM, Pricing
from recursor.lm import LMProfile, default_profile, local, profile_of
from recursor.lm import anthropic as anthropic_lm
from recursor.lm import litellm as litellm_lm
from recursor.lm import openai as openai_lm
from recursor.lm.base import Completion, Message
from recursor.lm.pricing import lookup
from recursor.lm.registry import resolve_lm
from recursor.testing import FunctionLM, ScriptedLM
from recursor.usage import Usage

URL = "http://127.0.0.1:9/v1"


class Bare:
    """A user's own model from before profiles: name, complete, acomplete, nothing else."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: attributes the core once probed: a profile-less object no longer gets them read
        self.context_window = 7
        self.pricing = Pricing(9, 9)

    def complete(self, messages: list[Message]) -> Completion:
        return Completion("ok", Usage(calls=1))

    async def acomplete(self, messages: list[Message]) -> Completion:
        return self.complete(messages)


def test_an_lm_without_a_profile_gets_the_documented_default() -> None:
    known = profile_of(Bare("openai:gpt-4o-mini-2024-07-18"))
    assert known == LMProfile(context_window=128_000, pricing=lookup("openai", "gpt-4o-mini"))
    assert profile_of(Bare("mine")) == LMProfile()
    assert profile_of(Bare("openai:no-such-model")) == LMProfile()
    assert profile_of(Bare("local:my.gguf")).prompt_style == "compact"
    assert default_profile("anthropic:claude-sonnet-4-5").context_window == 200_000


def test_rlm_accepts_an_lm_without_a_profile() -> None:
    bare = Bare("openai:gpt-4o-mini")
    assert resolve_lm(bare) is bare
    rlm = RLM(bare, environment="inprocess", context_windows={"other": 5})
    assert rlm.broker_options.context_window(bare) == 128_000
    assert rlm.sub_chars(bare) == 384_000


def test_openai_profile() -> None:
    lm = openai_lm.create("gpt-4o-mini", base_url=URL, api_key="k", temperature=0.5)
    assert lm.profile == LMProfile(
        context_window=128_000,
        pricing=lookup("openai", "gpt-4o-mini"),
        cache_params={"temperature": 0.5},
        streams=True,  # it implements StreamingLM
    )
    capped = openai_lm.create(
        "gpt-4o-mini", base_url=URL, api_key="k", max_tokens=50, extra_body={"top_k": 2}
    )
    assert capped.profile.max_output_tokens == 50
    assert capped.profile.cache_params == {"max_tokens": 50, "extra_body": {"top_k": 2}}
    unpriced = openai_lm.create("my-model", base_url=URL, pricing=None)
    assert unpriced.profile.context_window is None and unpriced.profile.pricing is None


def test_anthropic_profile_caps_output_with_the_max_tokens_it_sends() -> None:
    lm = anthropic_lm.create("claude-haiku-4-5", base_url=URL, api_key="k")
    assert lm.profile.context_window == 200_000
    assert lm.profile.max_output_tokens == 8192  # the API requires one, so it is always sent
    assert lm.profile.cache_params == {}
    assert anthropic_lm.create("claude-3-haiku", api_key="k").profile.max_output_tokens == 4096


def test_litellm_profile_reads_the_provider_row() -> None:
    lm = litellm_lm.create("anthropic/claude-haiku-4-5", max_tokens=10)
    assert lm.profile.context_window == 200_000
    assert lm.profile.pricing == lookup("anthropic", "claude-haiku-4-5")
    assert lm.profile.max_output_tokens == 10
    assert litellm_lm.create("gemini/gemini-2.5-flash").profile.context_window is None


def test_local_profile_is_the_runtime_n_ctx() -> None:
    config = local.RuntimeConfig("/nonexistent.gguf", n_ctx=4096)
    lm = local.LocalLM("local:x", config, max_tokens=256)
    assert lm.profile == LMProfile(
        context_window=4096,
        pricing=local.PRICING,
        max_output_tokens=256,
        cache_params={"temperature": 0.0, "max_tokens": 256},
        prompt_style="compact",
        streams=True,  # llama.cpp streams token deltas through xllamacpp's callback
    )
    warm = local.LocalLM("local:x", config, temperature=0.7, seed=3)
    assert warm.profile.cache_params["seed"] == 3  # sampling: the seed changes the reply


def test_fakes_declare_a_profile() -> None:
    assert ScriptedLM([]).profile == LMProfile()
    priced = FunctionLM(lambda c: "x", pricing=Pricing(1, 2), profile=LMProfile(context_window=9))
    assert priced.profile == LMProfile(context_window=9, pricing=Pricing(1, 2))
    usage = priced.complete([{"role": "user", "content": "hi"}]).usage
    assert usage.cost_usd is not None and usage.cost_usd > 0
