"""The worker channel: big strings as blobs, and frames from an untrusted side that must not
crash the host or make it allocate more than its cap."""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from recursor.context import Context
from recursor.errors import ProtocolError, SandboxError
from recursor.sandbox.base import SessionSpec, SubcallRequest, SubcallResponse
from recursor.sandbox.framing import BLOB_MIN, Channel, encode
from recursor.sandbox.subprocess import SubprocessEnvironment, WorkerLimits

BIG = "x" * BLOB_MIN


@pytest.fixture
def pipe() -> Iterator[tuple[Channel, Channel]]:
    """A writer and a reader on one pipe (the reader capped at 1 MB)."""
    r, w = os.pipe()
    writer, reader = Channel(-1, w), Channel(r, -1, max_frame=1 << 20)
    yield writer, reader
    writer.close()
    reader.close()


def raw(obj: dict[str, Any], tail: bytes = b"") -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body + tail


def test_big_strings_cross_as_blobs_and_come_back_equal(pipe: tuple[Channel, Channel]) -> None:
    writer, reader = pipe
    frame = {
        "op": "subcall",
        "id": 1,
        "request": {
            "prompts": [BIG + "é", "small", "\ud800 lone surrogate " + BIG],
            "contexts": [{"deep": [BIG + "ü"]}, ("tuple", BIG), {1: BIG}],
        },
    }
    parts = encode(frame)
    header = json.loads(parts[1])
    assert [len(path) for path, _ in header["_blobs"]] == [3, 3, 5, 4]
    # four blobs; the string under an int key stays in the JSON (its path would name "1")
    assert len(parts) == 2 + 4 and parts[1].count(BIG.encode()) == 1
    # more than a pipe holds: the write must overlap the read
    sender = threading.Thread(target=writer.send, args=(frame,))
    sender.start()
    got = reader.recv()
    sender.join()
    # tuples arrive as lists and int keys as strings, as JSON always made them
    frame["request"]["contexts"] = [{"deep": [BIG + "ü"]}, ["tuple", BIG], {"1": BIG}]
    assert got == frame
    # the sender's objects are left as they were
    assert frame["request"]["prompts"][0] == BIG + "é"


def test_small_frames_are_plain_json(pipe: tuple[Channel, Channel]) -> None:
    writer, reader = pipe
    parts = encode({"op": "var", "value": "short"})
    assert len(parts) == 2 and b"_blobs" not in parts[1]
    writer.send({"op": "var", "value": "short"})
    assert reader.recv() == {"op": "var", "value": "short"}


def test_frame_over_the_cap_is_refused_before_it_is_read(pipe: tuple[Channel, Channel]) -> None:
    writer, reader = pipe
    os.write(writer.write_fd, struct.pack(">I", 2 << 20))
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        reader.recv()


def test_sender_refuses_a_frame_over_its_cap() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        encode({"op": "x", "value": "y" * (2 << 20)}, max_frame=1 << 20)


@pytest.mark.parametrize(
    ("blobs", "tail", "match"),
    [
        ([[["value"], 2 << 20]], b"", "exceed the frame limit"),
        ([[["value"], 600_000], [["other"], 600_000]], b"", "exceed the frame limit"),
        ("nope", b"", "must be a list"),
        ([[["value"], -1]], b"", "malformed blob"),
        ([[["value"], True]], b"", "malformed blob"),
        ([[[], 1]], b"a", "malformed blob"),
        ([[["missing"], 1]], b"a", "leads nowhere"),
        ([[["value", 0], 1]], b"a", "leads nowhere"),
        ([[["op"], 1]], b"a", "placeholder"),
        ([[["value"], 1], [["value"], 1]], b"ab", "placeholder"),
        ([[["value"], 2]], b"\xff\xfe", "not UTF-8"),
        ([[["value"], 5]], b"ab", "stream ended"),
    ],
)
def test_malformed_blob_frames_are_protocol_errors(
    pipe: tuple[Channel, Channel], blobs: Any, tail: bytes, match: str
) -> None:
    writer, reader = pipe
    os.write(writer.write_fd, raw({"op": "var", "value": None, "_blobs": blobs}, tail))
    os.close(writer.write_fd)
    writer.write_fd = -1
    with pytest.raises(ProtocolError, match=match):
        reader.recv()


def test_absurd_nesting_is_a_protocol_error(pipe: tuple[Channel, Channel]) -> None:
    writer, reader = pipe
    body = b'{"op":"x","v":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    t = threading.Thread(
        target=lambda: os.write(writer.write_fd, struct.pack(">I", len(body)) + body)
    )
    t.start()
    with pytest.raises(ProtocolError, match="malformed"):
        reader.recv()
    t.join()


def echo(request: SubcallRequest) -> SubcallResponse:
    n = len(request.prompts)
    return SubcallResponse([p[::-1] for p in request.prompts], [None] * n, [None] * n)


def test_big_prompt_and_answer_cross_a_real_worker() -> None:
    env = SubprocessEnvironment(prestart=False, hardened=False)
    session = env.open(SessionSpec(Context("abc" * 10_000), echo))
    try:
        cell = session.run(
            "r = llm_query(context + 'é')\nprint(len(r), r[:2], r == (context + 'é')[::-1])",
            deadline=None,
            output_limit=1000,
        )
        assert cell.error is None and cell.stdout.strip() == "30001 éc True"
    finally:
        session.close()


def test_worker_sending_an_oversized_frame_loses_its_repl_not_the_host() -> None:
    env = SubprocessEnvironment(prestart=False, hardened=False, limits=WorkerLimits(frame_mb=1))
    session = env.open(SessionSpec(Context("abc"), echo))
    try:
        # model code writes straight into the channel: a header promising 2 GB
        cell = session.run(
            "import os, struct, sys\nos.write(int(sys.argv[2]), struct.pack('>I', 2 << 30))\n"
            "import time\ntime.sleep(5)",
            deadline=None,
            output_limit=1000,
        )
        assert cell.lost_state and "broke the channel protocol" in (cell.error or "")
        assert "exceeds the limit" in (cell.error or "")
        # a fresh worker serves the next cell
        again = session.run("print(len(context))", deadline=None, output_limit=1000)
        assert again.stdout.strip() == "3"
        # the refusal is a SandboxError in the host, not a crash of a host thread
        assert issubclass(ProtocolError, SandboxError)
    finally:
        session.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "subcall", "id": 1, "request": "not an object"},
        {"op": "subcall", "id": "1", "request": {"kind": "llm", "prompts": ["a"]}},
        {"op": "subcall", "id": 1, "request": {"kind": "llm", "prompts": "a" * 100}},
        {"op": "subcall", "id": 1, "request": {"kind": "rlm", "prompts": ["a"], "contexts": []}},
        {"op": "result", "cell": {"stdout": 3}},
        {"op": "result", "cell": {"unknown": ""}},
        {"op": "result", "cell": {"notes": [1]}},
    ],
)
def test_well_formed_frames_with_bad_content_lose_the_repl(frame: dict[str, Any]) -> None:
    env = SubprocessEnvironment(prestart=False, hardened=False)
    calls: list[SubcallRequest] = []

    def handler(request: SubcallRequest) -> SubcallResponse:
        calls.append(request)
        return echo(request)

    session = env.open(SessionSpec(Context("abc"), handler))
    try:
        cell = session.run(
            "import json, os, struct, sys, time\n"
            f"body = json.dumps({frame!r}).encode()\n"
            "os.write(int(sys.argv[2]), struct.pack('>I', len(body)) + body)\ntime.sleep(5)",
            deadline=None,
            output_limit=1000,
        )
        assert cell.lost_state and "a bad" in (cell.error or ""), cell.error
        assert calls == []
    finally:
        session.close()


def test_a_second_close_never_closes_a_reused_fd_number() -> None:
    import os

    r, w = os.pipe()
    channel = Channel(r, w)
    channel.close()
    r2, w2 = os.pipe()  # the lowest free numbers: usually the ones just closed
    try:
        channel.close()
        os.write(w2, b"x")  # still open: EBADF here would mean the second close took them
        assert os.read(r2, 1) == b"x"
        assert channel.read_fd == channel.write_fd == -1
    finally:
        os.close(r2)
        os.close(w2)
