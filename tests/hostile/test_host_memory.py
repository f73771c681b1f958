"""Host memory is bounded per worker, whatever the worker sends.

Each attack is model code writing forged frames to its worker's channel (or a real call the
host must refuse). Bounds: the host's RSS grows by less than 300 MB, the run goes on (the cell
that attacked is told why its REPL was lost), and no process is left.
"""

from __future__ import annotations

import os
import sys
import threading
import tracemalloc
from collections.abc import Callable

import pytest

from recursor import Limits
from recursor.errors import ProtocolError
from recursor.sandbox.base import Environment
from recursor.sandbox.framing import Channel
from recursor.testing import FunctionLM

from ._host import FORGE, RSS_BOUND_MB, attack

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="OS confinement is Linux only")


ATTACKS = {
    # a 4-byte header claiming 1 GiB of JSON, and nothing after it
    "header-1GiB": (FORGE + "put(struct.pack('>I', 1 << 30))\ntime.sleep(5)", "exceeds the limit"),
    # 4 MB of JSON zeros: 2 million values
    "zeros-array": (
        FORGE + "body = b'{\"op\":\"var\",\"value\":[' + b'0,' * 2_000_000 + b'0]}'\n"
        "put(struct.pack('>I', len(body)) + body)\ntime.sleep(5)",
        "JSON values, over the",
    ),
    # a 200 MB blob with one emoji: 800 MB once decoded to str
    "emoji-string": (
        FORGE + "blob = b'\\xf0\\x9f\\x98\\x80' + b'a' * (200 << 20)\n"
        "frame({'op': 'var', 'value': None, '_blobs': [[['value'], len(blob)]]})\n"
        "put(blob)\ntime.sleep(5)",
        "decode to",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_amplifying_frames_cost_the_worker_not_host_memory(
    isolating: Callable[[], Environment], name: str
) -> None:
    body, why = ATTACKS[name]
    out = attack(isolating, [body, "FINAL('alive: ' + context)"], limits=Limits(cell_timeout_s=20))
    assert out.result.answer == "alive: ctx", out.result.error
    told = out.observations[0]
    assert "broke the channel protocol" in told and why in told, told
    assert out.rss_mb < RSS_BOUND_MB, f"host RSS grew {out.rss_mb:.0f} MB"
    assert out.seconds < 15  # refused as it arrives, not at the cell's limit
    assert not out.left


def test_a_batch_of_200000_prompts_is_refused_whole(isolating: Callable[[], Environment]) -> None:
    calls: list[int] = []
    out = attack(
        isolating,
        [
            "try:\n    llm_query_batched([''] * 200_000)\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)",
            "FINAL('alive: ' + context)",
        ],
        limits=Limits(cell_timeout_s=20),
        sub=FunctionLM(lambda m: calls.append(1) or "ok"),
    )
    assert out.result.answer == "alive: ctx", out.result.error
    told = out.observations[0]
    assert "BatchLimitExceeded" in told and "max_batch=2000" in told, told
    assert not calls  # nothing was made, so nothing is held per item
    assert out.rss_mb < RSS_BOUND_MB
    assert not out.left


# -- the channel itself --------------------------------------------------------------------------


def _feed(data: bytes) -> tuple[Channel, threading.Thread]:
    r, w = os.pipe()

    def write() -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(w, view) :]
        except BrokenPipeError:
            pass  # the reader refused the frame and stopped reading: as it should
        finally:
            os.close(w)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return Channel(r, -1, max_frame=1 << 31, max_json=1 << 31), thread


def test_a_header_claim_allocates_nothing_until_bytes_arrive() -> None:
    channel, thread = _feed((1 << 30).to_bytes(4, "big") + b"{" * 1000)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="stream ended inside a frame"):
            channel.recv()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        thread.join()
        os.close(channel.read_fd)
    assert peak < 4 << 20, f"{peak:,} bytes allocated for a 1 GiB claim"


def test_json_values_are_counted_before_they_are_built() -> None:
    body = b'{"op":"var","value":[' + b"[]," * 300_000 + b"[]]}"
    channel, thread = _feed(len(body).to_bytes(4, "big") + body)
    try:
        with pytest.raises(ProtocolError, match="JSON values, over the 250,000 limit"):
            channel.recv()
    finally:
        thread.join()
        os.close(channel.read_fd)


def test_commas_inside_strings_are_not_values() -> None:
    body = b'{"op":"var","value":"' + b"," * 1_000_000 + b'"}'
    channel, thread = _feed(len(body).to_bytes(4, "big") + body)
    try:
        got = channel.recv()
    finally:
        thread.join()
        os.close(channel.read_fd)
    assert got is not None and len(got["value"]) == 1_000_000


@pytest.mark.parametrize(
    ("text", "fits"),
    [("a" * 900_000, True), ("\u0101" * 200_000, True), ("a" * 300_000 + "\U0001f600", False)],
)
def test_blobs_are_bounded_by_their_decoded_size(text: str, fits: bool) -> None:
    blob = text.encode()
    head = b'{"op":"var","value":null,"_blobs":[[["value"],%d]]}' % len(blob)
    channel, thread = _feed(len(head).to_bytes(4, "big") + head + blob)
    channel.max_frame = 1 << 20  # 1 MiB: 300,001 characters of 4 bytes do not fit
    try:
        if fits:
            got = channel.recv()
            assert got is not None and got["value"] == text
        else:
            with pytest.raises(ProtocolError, match="decode to"):
                channel.recv()
    finally:
        os.close(channel.read_fd)
        thread.join()
