"""A scriptable fake model server on 127.0.0.1, speaking the OpenAI and Anthropic wire formats.

Tests and benchmarks point the real SDK clients at it, so the whole HTTP path (serialisation,
retries, timeouts, error bodies) is exercised without mocking SDK internals and without a
network::

    with StubServer(handler=lambda messages: "hi", fail_first=1) as srv:
        lm = recursor.lm.openai.create("gpt-4o-mini", base_url=srv.base_url, api_key="k")
        lm.complete([{"role": "user", "content": "hello"}])   # one 429, an SDK retry, then "hi"
        srv.requests[-1].headers["authorization"]              # "Bearer k"

Routes: ``POST .../chat/completions`` (OpenAI) and ``POST .../messages`` (Anthropic), JSON,
or server-sent events when the body asks for ``"stream": true`` (the reply is sent a word at a
time, ``stream_delay`` seconds apart). Usage reports prompt-cache hits the way each provider
does, from a small model of its cache (:mod:`recursor.lm.stub_cache`). The handler sees the
chat in one shape for both: a list of ``{"role", "content"}`` with Anthropic's ``system``
parameter as a leading system message. It returns the reply text, a :class:`StubReply` for
anything unusual (thinking blocks, no content, a raw body), or raises :class:`StubError` to
answer with an HTTP error in the provider's format.

Stdlib only (``ThreadingHTTPServer``): a thread per connection, HTTP/1.1 keep-alive so the
SDKs' connection pools are reused, and no lock held while a reply is delayed, so concurrent
requests are served concurrently (a 1,000-call fan-out benchmark runs against it).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypedDict, Unpack

from recursor.lm.stub_cache import PromptCache, anthropic_marks
from recursor.usage import estimate_tokens

__all__ = ["RecordedRequest", "StubError", "StubReply", "StubScript", "StubServer"]

Chat = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class StubReply:
    """A reply with more than text. ``raw`` replaces the whole JSON body when given."""

    text: str | None = "ok"
    #: OpenAI spelling; Anthropic replies get "stop" -> "end_turn", "length" -> "max_tokens"
    finish_reason: str = "stop"
    #: Anthropic content blocks sent verbatim (e.g. a thinking block before the text)
    blocks: list[dict[str, Any]] | None = None
    #: (input, output) tokens to report; by default the 4-chars-a-token estimate
    usage: tuple[int, int] | None = None
    raw: dict[str, Any] | None = None


class StubError(Exception):
    """Raise from a handler to answer with HTTP ``status`` and a provider-shaped error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it; header names are lower-cased."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(slots=True)
class StubScript:
    """How the server behaves; mutable, so a test may change it between requests."""

    handler: Callable[[Chat], str | StubReply] = lambda _chat: "ok"
    #: seconds to wait before each reply (slept without holding any lock)
    delay: float = 0.0
    #: the first N requests fail with ``fail_status`` (429 carries Retry-After)
    fail_first: int = 0
    fail_status: int = 429
    #: seconds, sent as ``Retry-After`` (and ``retry-after-ms``) on 429s; tiny keeps tests fast
    retry_after: float = 0.01
    #: answer without a ``usage`` object, like some OpenAI-compatible servers
    omit_usage: bool = False
    #: never answer (until the server stops): for timeout tests
    hang: bool = False
    #: keep every request in ``StubServer.requests``
    record: bool = True
    #: seconds between the pieces of a streamed reply
    stream_delay: float = 0.0


class StubBehaviour(TypedDict, total=False):
    """The keywords of :class:`StubServer` after ``handler``: :class:`StubScript`'s fields."""

    delay: float
    fail_first: int
    fail_status: int
    retry_after: float
    omit_usage: bool
    hang: bool
    record: bool
    stream_delay: float


@dataclass(slots=True)
class _State:
    script: StubScript
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    connections: set[socket.socket] = field(default_factory=set)
    cache: PromptCache = field(default_factory=PromptCache)


class StubServer:
    """The server; a context manager. ``base_url`` is for OpenAI clients, ``url`` for Anthropic."""

    def __init__(
        self,
        handler: Callable[[Chat], str | StubReply] | None = None,
        **behaviour: Unpack[StubBehaviour],
    ) -> None:
        script = StubScript(**behaviour)
        if handler is not None:
            script.handler = handler
        self._state = _State(script)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def script(self) -> StubScript:
        return self._state.script

    @property
    def requests(self) -> list[RecordedRequest]:
        """Requests received so far (a copy)."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("StubServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the base URL the Anthropic SDK wants."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the base URL the OpenAI SDK (and litellm) want."""
        return f"{self.url}/v1"

    def start(self) -> StubServer:
        if self._httpd is not None:
            return self
        self._state.stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.state = self._state
        self._httpd = httpd
        # a short poll interval: stop() waits for serve_forever to notice, once per test
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._state.stopping.set()  # releases hanging handlers
        httpd.shutdown()
        httpd.server_close()
        # idle keep-alive connections would keep their threads reading forever
        with self._state.lock:
            open_connections = list(self._state.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # the default backlog of 5 drops connections under a burst of concurrent clients
    request_queue_size = 1024
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (timeout tests) resets its connection: not a server bug
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDKs reuse connections
    # headers and body go out in two writes; with Nagle on, the client's delayed ACK would
    # add ~40 ms to every reply
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.state.lock:
            self.server.state.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # a reset connection cannot be flushed
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet, and never a chance to print request details

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        anthropic = self.path.rstrip("/").endswith("/messages")
        if not anthropic and not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, _error_body(anthropic, 404, f"no route {self.path}", None))
            return
        script = state.script
        with state.lock:
            number = state.seen
            state.seen += 1
            if script.record:
                headers = {k.lower(): v for k, v in self.headers.items()}
                state.requests.append(RecordedRequest(self.path, headers, body))
        if script.hang or (script.delay > 0 and state.stopping.wait(script.delay)):
            state.stopping.wait()  # hang until stop(); then drop the connection unanswered
            self.close_connection = True
            return
        if number < script.fail_first:
            self._fail(anthropic, script)
            return
        self._answer(anthropic, body, script)

    def _fail(self, anthropic: bool, script: StubScript) -> None:
        status = script.fail_status
        headers = {}
        if status == 429:
            headers = {
                "retry-after": f"{script.retry_after:g}",
                "retry-after-ms": f"{script.retry_after * 1000:g}",
            }
        message = "rate limited" if status == 429 else "stub failure"
        self._send(status, _error_body(anthropic, status, message, None), headers)

    def _answer(self, anthropic: bool, body: dict[str, Any], script: StubScript) -> None:
        chat = _anthropic_chat(body) if anthropic else _openai_chat(body)
        try:
            reply = script.handler(chat)
        except StubError as err:
            payload = _error_body(anthropic, err.status, err.message, err.code)
            self._send(err.status, payload, err.headers)
            return
        except Exception as exc:  # a broken handler is the test's bug: show it as a 500
            self._send(500, _error_body(anthropic, 500, f"handler failed: {exc!r}", None))
            return
        if isinstance(reply, str):
            reply = StubReply(text=reply)
        if reply.raw is not None:
            self._send(200, reply.raw)
            return
        if reply.usage is not None:
            usage: _Usage | None = _Usage(*reply.usage)
        else:
            cache = self.server.state.cache
            if anthropic:
                counts = cache.anthropic(chat, anthropic_marks(body))
            else:
                key = body.get("prompt_cache_key")
                counts = cache.openai(chat, key if isinstance(key, str) else None)
            usage = _Usage(counts.total, estimate_tokens(reply.text or ""), counts.read)
            usage.written = counts.written
        if script.omit_usage:
            usage = None
        model = str(body.get("model", "stub"))
        if body.get("stream") is True:
            pieces = re.findall(r"\s*\S+\s*", reply.text or "") or [reply.text or ""]
            if anthropic:
                events = _anthropic_events(model, reply, usage, pieces)
            else:
                options = body.get("stream_options")
                with_usage = isinstance(options, dict) and options.get("include_usage") is True
                events = _openai_events(model, reply, usage if with_usage else None, pieces)
            self._stream(events, script.stream_delay)
            return
        make = _anthropic_body if anthropic else _openai_body
        self._send(200, make(model, reply, usage))

    def _stream(self, events: list[tuple[str, dict[str, Any] | None]], delay: float) -> None:
        """The reply as server-sent events, in HTTP/1.1 chunks (the connection stays open)."""
        stopping = self.server.state.stopping
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i, (name, payload) in enumerate(events):
                paced = i and delay > 0 and name in ("", "content_block_delta")
                if paced and stopping.wait(delay):
                    self.close_connection = True
                    return
                data = f"data: {json.dumps(payload) if payload is not None else '[DONE]'}\n\n"
                if name:
                    data = f"event: {name}\n{data}"
                raw = data.encode()
                self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client left mid-stream

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client is gone


# ------------------------------------------------------------------------ wire formats


def _text_of(content: object) -> str:
    """Text of a message's content: a string, or a list of blocks/parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _openai_chat(body: dict[str, Any]) -> Chat:
    return [
        {"role": str(m.get("role", "")), "content": _text_of(m.get("content"))}
        for m in body.get("messages", [])
    ]


def _anthropic_chat(body: dict[str, Any]) -> Chat:
    chat: Chat = []
    system = body.get("system")
    if system:
        chat.append({"role": "system", "content": _text_of(system)})
    chat.extend(_openai_chat(body))
    return chat


@dataclass(slots=True)
class _Usage:
    """Prompt and reply tokens; ``read``/``written``: prompt tokens read from / written to the
    prompt cache (parts of ``prompt``)."""

    prompt: int
    completion: int
    read: int = 0
    written: int = 0

    def openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.read},
        }

    def anthropic(self) -> dict[str, Any]:
        # Anthropic's input_tokens leaves out what was read from or written to the cache
        return {
            "input_tokens": self.prompt - self.read - self.written,
            "output_tokens": self.completion,
            "cache_read_input_tokens": self.read,
            "cache_creation_input_tokens": self.written,
        }


def _openai_events(
    model: str, reply: StubReply, usage: _Usage | None, pieces: list[str]
) -> list[tuple[str, dict[str, Any] | None]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[tuple[str, dict[str, Any] | None]] = [("", chunk({"role": "assistant"}, None))]
    events += [("", chunk({"content": piece}, None)) for piece in pieces]
    events.append(("", chunk({}, reply.finish_reason)))
    if usage is not None:
        last = chunk({}, None)
        last["choices"] = []
        last["usage"] = usage.openai()
        events.append(("", last))
    events.append(("", None))
    return events


def _anthropic_events(
    model: str, reply: StubReply, usage: _Usage | None, pieces: list[str]
) -> list[tuple[str, dict[str, Any] | None]]:
    counts = usage.anthropic() if usage is not None else {"input_tokens": 0, "output_tokens": 0}
    start = {**_anthropic_body(model, StubReply(text=None), None), "content": []}
    start["stop_reason"] = None
    start["usage"] = {**counts, "output_tokens": 0}
    events: list[tuple[str, dict[str, Any] | None]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    stop = _ANTHROPIC_STOP.get(reply.finish_reason, reply.finish_reason)
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": counts["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def _openai_body(model: str, reply: StubReply, usage: _Usage | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage.openai()
    return body


_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens"}


def _anthropic_body(model: str, reply: StubReply, usage: _Usage | None) -> dict[str, Any]:
    if reply.blocks is not None:
        blocks = reply.blocks
    else:
        blocks = [] if reply.text is None else [{"type": "text", "text": reply.text}]
    body: dict[str, Any] = {
        "id": "msg_stub",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": _ANTHROPIC_STOP.get(reply.finish_reason, reply.finish_reason),
        "stop_sequence": None,
    }
    if usage is not None:
        body["usage"] = usage.anthropic()
    return body


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error_body(anthropic: bool, status: int, message: str, code: str | None) -> dict[str, Any]:
    if anthropic:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
