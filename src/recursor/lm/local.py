"""The embedded offline backend, ``local:<model>``: llama.cpp in-process, through xllamacpp.

``local:qwen2.5-coder-1.5b`` (the default model of recursor) and ``local:qwen2.5-coder-0.5b``
name the embedded models of :mod:`recursor.lm.gguf_store`; ``local:/path/to/model.gguf`` runs
any GGUF file. Nothing leaves the machine and a call costs nothing, so usage carries a known
price of 0 (``Pricing(0, 0)``), not an unknown one.

How it runs, and why:

* **One runtime per process and model.** Loading takes seconds and ~2 GB, so the llama.cpp
  server is started once per (file, n_ctx, threads) and shared by every :class:`LocalLM` that
  names it (root and sub-model, say); temperature and max_tokens are per request.
* **One call at a time.** The runtime has one slot (``n_parallel=1``: two cores cannot decode two
  sequences faster than one), and a lock serializes callers so that each finds the slot free.
* **Prompt cache on.** An RLM resends its whole history every turn; llama.cpp keeps the KV cache
  of the longest common prefix, so a turn only pays for its new tokens. A small RAM cache of
  slot states also brings a root's prefix back after a sub-call with another prompt evicted it.
* **Streamed when someone watches.** With :class:`~recursor.lm.base.CallHints` carrying
  ``on_delta``, the reply comes through xllamacpp's per-chunk callback, each piece handed on as
  llama.cpp samples it; the callback answering "stop" (the listener raised because the run was
  stopped) ends generation at the next token, freeing the slot for the next call.
* **Cached tokens reported.** llama.cpp says how much of the prompt it found in the slot
  (``prompt_tokens_details.cached_tokens``, else ``timings.cache_n``); usage carries it as
  ``cached_input_tokens`` (free like the rest), so a session can see its prefix was reused.
* **Quiet.** llama.cpp logs to stderr by default; ``verbosity = -1`` turns all of it off.
* **Loopback only, key-locked.** xllamacpp always starts llama.cpp's HTTP server (on 127.0.0.1,
  a random port). We call it in-process and never use that port, so it gets a random API key
  that nobody knows: other local users cannot borrow the model through it.

The model is loaded on the first call (or by :meth:`LocalLM.load`), not by :func:`create`, so
naming a model that a run never calls costs nothing; :func:`create` does check that the model
file and the runtime are there, so a missing install fails at configuration time.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack, cast

from recursor._threads import in_daemon_thread
from recursor.errors import BadResponseError, ConfigurationError, ContextWindowExceeded, LMError
from recursor.lm.base import CallHints, Completion, LMProfile, Message, SyncLM
from recursor.lm.gguf_store import DEFAULT_EMBEDDED_MODEL, EMBEDDED_MODELS, ensure_model
from recursor.usage import Pricing, Usage, estimate_message_tokens, estimate_tokens

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_N_CTX",
    "PRICING",
    "LocalLM",
    "RuntimeConfig",
    "create",
    "unload_all",
]

#: a local model is free: a known price of zero, so budgets in dollars still add up
PRICING = Pricing(0.0, 0.0)

#: tokens of context. 16k holds a long RLM root conversation; its KV cache costs ~0.46 GB
#: (28 KiB a token for the 1.5B model) on top of ~1.75 GB for weights and buffers.
DEFAULT_N_CTX = 16384
#: output tokens per call: a REPL cell or an answer, not an essay (at ~12 tok/s, 1024 ≈ 85 s)
DEFAULT_MAX_TOKENS = 1024


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


#: threads for prompt processing and generation: 2, one per core of the reference machine, and
#: never more than the cores we may run on. llama.cpp's threads spin-wait for each other, so a
#: thread without a core of its own stalls the rest: with other processes busy on the 2-core
#: machine, the 0.5B model generated 6.8 tok/s on 1 thread and 0.7 on 2 (idle: 2 threads are
#: twice as fast as 1). On a busy machine pass n_threads=1.
DEFAULT_THREADS = min(2, _usable_cores())
#: MiB of RAM for saved slot states (the cache that restores a prefix after an eviction);
#: llama.cpp's default is 8 GiB, far more than a library should take by default
DEFAULT_CACHE_RAM_MIB = 1024

_INSTALL_HINT = 'pip install "recursor[local]"'
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """What a loaded runtime is: the key of the per-process cache of runtimes."""

    path: str
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int = DEFAULT_THREADS
    cache_ram_mib: int = DEFAULT_CACHE_RAM_MIB
    #: let llama.cpp log to stderr (to see why a model does not load)
    verbose: bool = False


# ----------------------------------------------------------------- the xllamacpp boundary
# xllamacpp ships no type information; everything untyped stays in this section.


#: called with each chunk of a streamed reply (or the error body); True stops the generation
_ChunkCallback = Callable[[dict[str, Any]], bool]


class _ChatServer(Protocol):
    def handle_chat_completions(
        self, request: dict[str, Any], callback: _ChunkCallback | None = None
    ) -> dict[str, Any] | None: ...


def _runtime_missing(detail: str) -> ConfigurationError:
    return ConfigurationError(
        f"the local backend needs the llama.cpp runtime xllamacpp ({_INSTALL_HINT}): {detail}"
    )


def _check_runtime() -> None:
    """Fail early when xllamacpp is not installed, without loading its 100 MB library yet."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise _runtime_missing("not installed")


def _import_runtime() -> Any:
    try:
        return importlib.import_module("xllamacpp")
    except ImportError as exc:
        raise _runtime_missing(str(exc)) from exc


def _start_server(config: RuntimeConfig) -> _ChatServer:
    xlc = _import_runtime()
    params = xlc.CommonParams()
    params.model.path = config.path
    params.n_ctx = config.n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = config.n_threads
    params.cpuparams_batch.n_threads = config.n_threads
    params.cache_prompt = True
    params.cache_ram_mib = config.cache_ram_mib
    # -1 is below every log level: llama.cpp prints nothing at all (3 is its default, "info")
    params.verbosity = 3 if config.verbose else -1
    params.ui = False
    params.endpoint_slots = False
    params.n_threads_http = 1
    params.api_keys = [secrets.token_urlsafe(32)]
    try:
        server = xlc.Server(params)
    except Exception as exc:  # xllamacpp raises a bare RuntimeError and logs the reason
        raise ConfigurationError(
            f"llama.cpp could not load {config.path} with n_ctx={config.n_ctx}: not a model it "
            f"can read, or not enough memory ({exc}; verbose=True shows llama.cpp's log)"
        ) from exc
    return cast(_ChatServer, server)


# ------------------------------------------------------------------ one runtime per model


class _Runtime:
    def __init__(self, server: _ChatServer) -> None:
        self._server = server
        self._lock = threading.Lock()

    def chat(self, request: dict[str, Any]) -> Mapping[str, Any]:
        with self._lock:
            response = self._server.handle_chat_completions(request)
        return response if response is not None else {}

    def stream(self, request: dict[str, Any], callback: _ChunkCallback) -> None:
        """Run a streamed ``request``, ``callback`` on each chunk, on this thread."""
        with self._lock:
            self._server.handle_chat_completions(request, callback)


_RUNTIMES: dict[RuntimeConfig, _Runtime] = {}
#: how many LocalLM objects hold each runtime: the last one to close drops it
_HOLDERS: dict[RuntimeConfig, int] = {}
# Held while loading too: a second thread asking for the same model waits for the first load
# instead of starting another 2 GB copy.
_RUNTIMES_LOCK = threading.Lock()


def _runtime(config: RuntimeConfig, *, hold: bool = False) -> _Runtime:
    """The loaded runtime for ``config`` (loading it); ``hold``: count one more holder."""
    with _RUNTIMES_LOCK:
        runtime = _RUNTIMES.get(config)
        if runtime is None:
            runtime = _RUNTIMES[config] = _Runtime(_start_server(config))
        if hold:
            _HOLDERS[config] = _HOLDERS.get(config, 0) + 1
        return runtime


def _let_go(config: RuntimeConfig) -> None:
    """One holder fewer; the runtime is dropped (its memory freed once no call is still using
    it) when that was the last."""
    with _RUNTIMES_LOCK:
        left = _HOLDERS.get(config, 0) - 1
        if left > 0:
            _HOLDERS[config] = left
        else:
            _HOLDERS.pop(config, None)
            _RUNTIMES.pop(config, None)


def unload_all() -> None:
    """Drop every loaded runtime, freeing its memory once no call is still using it."""
    with _RUNTIMES_LOCK:
        _RUNTIMES.clear()
        _HOLDERS.clear()


# ------------------------------------------------------------------------------ the LM


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cached_tokens(response: Mapping[str, Any], prompt_tokens: int | None) -> int:
    """The prompt tokens llama.cpp took from the slot's KV cache (0 when it does not say)."""
    details = response.get("usage") or {}
    details = details.get("prompt_tokens_details") if isinstance(details, Mapping) else None
    cached = _int(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    if cached is None:  # older llama.cpp builds report it only in their timings
        timings = response.get("timings")
        cached = _int(timings.get("cache_n")) if isinstance(timings, Mapping) else None
    if cached is None or prompt_tokens is None or not 0 <= cached <= prompt_tokens:
        return 0
    return cached


class _Streamed:
    """A streamed reply put back together from llama.cpp's chunks, each piece passed on.

    It is xllamacpp's callback: returning True stops the generation. It never raises into
    xllamacpp (which would swallow the error); what went wrong is kept and raised afterwards.
    """

    def __init__(self, on_delta: Callable[[str], None]) -> None:
        self.on_delta = on_delta
        self.parts: list[str] = []
        self.finish: str | None = None
        #: the chunk carrying usage and timings (the last one), or an error body
        self.tail: Mapping[str, Any] = {}
        self.error: Mapping[str, Any] | None = None
        self.raised: BaseException | None = None

    def __call__(self, chunk: dict[str, Any]) -> bool:
        if not isinstance(chunk, Mapping) or "choices" not in chunk:
            self.error = chunk if isinstance(chunk, Mapping) else {"message": repr(chunk)}
            return True
        if "usage" in chunk or "timings" in chunk:
            self.tail = chunk
        for choice in chunk["choices"] or []:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, Mapping) else None
            if isinstance(piece, str) and piece:
                self.parts.append(piece)
                try:
                    self.on_delta(piece)
                except BaseException as exc:  # the run was stopped: stop generating now
                    self.raised = exc
                    return True
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finish = reason
        return False


class LocalLM(SyncLM):
    """A GGUF model run in this process. Thread-safe; calls on one model are serialized.

    Use :func:`create` (or the ``local:<model>`` string) rather than the constructor, which
    takes a model file that is already there. Objects with the same settings share one loaded
    runtime; :meth:`close` lets go of it, and the last to let go frees the model's memory (a
    call after that loads it again).
    """

    def __init__(
        self,
        name: str,
        config: RuntimeConfig,
        *,
        temperature: float = 0.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        seed: int = 0,
    ) -> None:
        if max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise ConfigurationError(f"temperature must be >= 0, got {temperature}")
        self.name = name
        self.config = config
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self._holding = False
        self._hold_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalLM({self.name!r}, n_ctx={self.config.n_ctx})"

    @property
    def profile(self) -> LMProfile:
        """The window is the runtime's real ``n_ctx`` (llama.cpp refuses a longer prompt), so
        the broker refuses such a prompt before the model is even loaded."""
        params: dict[str, object] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.temperature > 0:
            params["seed"] = self.seed  # greedy decoding (temperature 0) ignores the seed
        return LMProfile(
            context_window=self.config.n_ctx,
            pricing=PRICING,
            max_output_tokens=self.max_tokens,
            cache_params=params,
            # a small model on a CPU reads a long prompt slowly and follows it worse
            prompt_style="compact",
            streams=True,
        )

    def load(self) -> None:
        """Load the model now (it is otherwise loaded by the first call)."""
        self._loaded()

    def _loaded(self) -> _Runtime:
        with self._hold_lock:
            runtime = _runtime(self.config, hold=not self._holding)
            self._holding = True
            return runtime

    def close(self) -> None:
        """Let go of the loaded model (idempotent)."""
        with self._hold_lock:
            holding, self._holding = self._holding, False
        if holding:
            _let_go(self.config)

    async def aclose(self) -> None:
        self.close()

    def request(self, messages: list[Message]) -> dict[str, Any]:
        """The chat-completion request sent to llama.cpp for ``messages``."""
        return {
            "messages": _joined_assistant_turns(messages),
            "max_tokens": self.max_tokens,
            # temperature 0 makes llama.cpp sample greedily: the same chat, the same reply
            "temperature": self.temperature,
            "seed": self.seed,
            "cache_prompt": True,
            "stream": False,
        }

    def complete(self, messages: list[Message]) -> Completion:
        response = self._loaded().chat(self.request(messages))
        return self.parse(response, messages)

    def complete_with(self, messages: list[Message], hints: CallHints) -> Completion:
        """:meth:`complete`, streamed to ``hints.on_delta`` when given. ``hints.cache_key`` is
        not needed: the one slot keeps the last prompt's prefix whoever sent it."""
        if hints.on_delta is None:
            return self.complete(messages)
        streamed = _Streamed(hints.on_delta)
        request = {**self.request(messages), "stream": True}
        request["stream_options"] = {"include_usage": True}
        self._loaded().stream(request, streamed)
        if streamed.raised is not None:
            raise streamed.raised
        if streamed.error is not None:
            raise self._error(streamed.error)
        text = "".join(streamed.parts)
        return Completion(text, self._usage(streamed.tail, messages, text), streamed.finish)

    async def acomplete_with(self, messages: list[Message], hints: CallHints) -> Completion:
        return await in_daemon_thread(self.complete_with, messages, hints)

    def parse(self, response: Mapping[str, Any], messages: list[Message]) -> Completion:
        """The :class:`Completion` for llama.cpp's ``response``, or the mapped error."""
        if "choices" not in response:
            raise self._error(response)
        try:
            choice = response["choices"][0]
            text = choice["message"]["content"]
        except (LookupError, TypeError) as exc:
            raise BadResponseError(f"{self.name}: malformed response {response!r:.300}") from exc
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise BadResponseError(f"{self.name}: content is {type(text).__name__}, not str")
        reason = choice.get("finish_reason")
        usage = self._usage(response, messages, text)
        return Completion(text, usage, reason if isinstance(reason, str) else None)

    def _usage(self, response: Mapping[str, Any], messages: list[Message], text: str) -> Usage:
        counts = response.get("usage")
        counts = counts if isinstance(counts, Mapping) else {}
        prompt_tokens = _int(counts.get("prompt_tokens"))
        output_tokens = _int(counts.get("completion_tokens"))
        estimated = prompt_tokens is None or output_tokens is None
        return Usage.of_call(
            estimate_message_tokens(messages) if prompt_tokens is None else prompt_tokens,
            estimate_tokens(text) if output_tokens is None else output_tokens,
            PRICING,
            estimated=estimated,
            cache=(0 if estimated else _cached_tokens(response, prompt_tokens), 0),
        )

    def _error(self, response: Mapping[str, Any]) -> LMError:
        # Errors come back as llama.cpp's HTTP error body, {"error": {code, type, message}};
        # xllamacpp's own failures (undecodable output) put code/type/message at the top level.
        error = response.get("error", response)
        if not isinstance(error, Mapping):
            return BadResponseError(f"{self.name}: unexpected response {response!r:.300}")
        detail = error.get("message")
        message = f"{self.name}: {detail if isinstance(detail, str) and detail else error!r}"
        if error.get("type") == "exceed_context_size_error":
            return ContextWindowExceeded(
                f"{message} (raise n_ctx, up to the model's trained window, to fit more)"
            )
        return BadResponseError(message)


def _joined_assistant_turns(messages: list[Message]) -> list[dict[str, str]]:
    """``messages`` as llama.cpp takes them: assistant messages in a row joined into one.

    The OpenAI API accepts two assistant messages in a row, and the official ``rlms`` sends them
    when it asks for a last answer; llama.cpp's chat templates refuse them ("Cannot have 2 or
    more assistant messages at the end of the list"), which failed every such call a peer or a
    ``recursor serve`` client made to the embedded model. A trailing assistant message is a
    prefix llama.cpp continues, as before."""
    out: list[dict[str, str]] = []
    for m in messages:
        if out and m["role"] == "assistant" and out[-1]["role"] == "assistant":
            out[-1] = {"role": "assistant", "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def _model_file(model: str) -> Path:
    """The GGUF file for ``model``: an embedded model's name, or a path."""
    if model in EMBEDDED_MODELS:
        return ensure_model(model)
    path = Path(model).expanduser()
    if path.suffix != ".gguf" and "/" not in model and "\\" not in model:
        raise ConfigurationError(
            f"unknown local model {model!r}: use one of {', '.join(EMBEDDED_MODELS)} "
            "or the path of a .gguf file"
        )
    try:
        with path.open("rb") as f:
            magic = f.read(len(_GGUF_MAGIC))
    except OSError as exc:
        raise ConfigurationError(f"cannot read local model file {path}: {exc}") from exc
    if magic != _GGUF_MAGIC:
        raise ConfigurationError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    return path.resolve()


class LocalOptions(TypedDict, total=False):
    """The keywords of :func:`create`."""

    #: per request (default 0.0)
    temperature: float
    #: per request (default DEFAULT_MAX_TOKENS)
    max_tokens: int
    #: the runtime's context size in tokens, at least 256 (default DEFAULT_N_CTX)
    n_ctx: int
    #: at least 1 (default DEFAULT_THREADS)
    n_threads: int
    #: the runtime's prompt cache (default DEFAULT_CACHE_RAM_MIB)
    cache_ram_mib: int
    #: per request (default 0)
    seed: int
    #: the runtime's own logging (default False)
    verbose: bool


def create(model: str = DEFAULT_EMBEDDED_MODEL, **options: Unpack[LocalOptions]) -> LocalLM:
    """The LM for ``local:<model>`` (what :func:`recursor.lm.registry.resolve_lm` calls).

    ``model`` is an embedded model's name (assembled into the cache on first use) or the path
    of a GGUF file. Checks that the file and the xllamacpp runtime are there; the weights are
    loaded by the first call.
    """
    unknown = sorted(set(options) - set(LocalOptions.__annotations__))
    if unknown:  # what Python says of a keyword the signature lacks
        raise TypeError(f"create() got unexpected keyword argument(s): {', '.join(unknown)}")
    n_ctx = options.get("n_ctx", DEFAULT_N_CTX)
    n_threads = options.get("n_threads", DEFAULT_THREADS)
    if n_ctx < 256:
        raise ConfigurationError(f"n_ctx must be at least 256, got {n_ctx}")
    if n_threads < 1:
        raise ConfigurationError(f"n_threads must be at least 1, got {n_threads}")
    path = _model_file(model)
    _check_runtime()
    config = RuntimeConfig(
        str(path),
        n_ctx,
        n_threads,
        options.get("cache_ram_mib", DEFAULT_CACHE_RAM_MIB),
        options.get("verbose", False),
    )
    return LocalLM(
        f"local:{model}",
        config,
        temperature=options.get("temperature", 0.0),
        max_tokens=options.get("max_tokens", DEFAULT_MAX_TOKENS),
        seed=options.get("seed", 0),
    )
