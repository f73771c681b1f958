"""Sinks get events on a thread of their own: in order, without slowing the run, flushed on ask."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest

from recursor import RLM
from recursor.lm.base import Message
from recursor.testing import FunctionLM
from recursor.trace import Event, LimitHit, MemorySink, Trace
from recursor.trace.delivery import SinkQueue

from ..conftest import code


def hit(i: int) -> LimitHit:
    return LimitHit(f"r{i}", limit="max_tokens", message=str(i))


class SlowSink(MemorySink):
    """Takes ``delay`` seconds over every event."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def __call__(self, event: Event) -> None:
        time.sleep(self.delay)
        super().__call__(event)


def test_a_slow_sink_does_not_slow_the_run() -> None:
    sink = SlowSink(0.5)
    calls: list[float] = []

    def root(messages: list[Message]) -> str:
        calls.append(time.monotonic())
        return code(f"print({len(calls)})") if len(calls) < 3 else "FINAL(done)"

    result = RLM(FunctionLM(root), environment="inprocess", sinks=[sink]).completion("q", "c")
    assert result.answer == "done"
    # two events (the model call, the cell) go to the sink between two calls: 1 s if the run
    # waited for it
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert max(gaps) < 0.45, gaps
    # and the completion returned with every event delivered, in order
    assert sink.events == result.trace.events


def test_events_from_many_threads_arrive_in_the_order_emitted() -> None:
    sink = MemorySink()
    trace = Trace([sink])

    def emit(base: int) -> None:
        for i in range(200):
            trace.emit(hit(base + i))

    threads = [threading.Thread(target=emit, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trace.close()
    assert sink.events == trace.events and len(sink.events) == 800


def test_flush_waits_for_delivery_and_close_drains_then_stops() -> None:
    sink = SlowSink(0.02)
    queue = SinkQueue([sink])
    for i in range(10):
        queue.put(hit(i))
    assert len(sink.events) < 10  # put did not wait for the sink
    assert queue.flush(timeout=0.001) is False  # still delivering
    assert queue.flush() is True
    assert [e.message for e in sink.events] == [str(i) for i in range(10)]  # type: ignore[attr-defined]

    for i in range(10, 20):
        queue.put(hit(i))
    thread = queue._thread
    queue.close()
    assert len(sink.events) == 20  # close delivered what was queued...
    assert thread is not None and not thread.is_alive()  # ...and stopped the thread
    queue.close()  # idempotent
    queue.put(hit(20))  # late (a thread the run abandoned): delivered where it is put
    assert len(sink.events) == 21 and queue._thread is thread


def test_the_delivery_thread_ends_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    import recursor.trace.delivery as delivery

    monkeypatch.setattr(delivery, "IDLE_S", 0.05)
    sink = MemorySink()
    queue = SinkQueue([sink])
    queue.put(hit(0))
    first = queue._thread
    assert first is not None
    first.join(timeout=5)
    assert not first.is_alive() and queue._thread is None  # nobody closed it: it ended anyway
    queue.put(hit(1))  # the next event starts another
    assert queue.flush(timeout=5) and len(sink.events) == 2
    queue.close()


def test_a_full_queue_makes_the_run_wait_for_room() -> None:
    gate = threading.Event()
    got: list[Event] = []

    def blocked(event: Event) -> None:
        gate.wait()
        got.append(event)

    queue = SinkQueue([blocked], bound=2)
    for i in range(3):  # one being delivered, two queued
        queue.put(hit(i))
    put = threading.Thread(target=queue.put, args=(hit(3),))
    put.start()
    put.join(timeout=0.2)
    assert put.is_alive()  # no room: it waits
    gate.set()
    put.join(timeout=5)
    queue.close()
    assert [e.message for e in got] == ["0", "1", "2", "3"]  # type: ignore[attr-defined]


def test_a_failing_sink_is_reported_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: Event) -> None:
        raise OSError("disk full")

    good = MemorySink()
    queue = SinkQueue([broken, good])
    with caplog.at_level(logging.ERROR, logger="recursor.trace"):
        for i in range(5):
            queue.put(hit(i))
        queue.close()
    assert len(good.events) == 5  # the other sink got everything
    assert queue.failures == [5, 0]
    reports = [r for r in caplog.records if r.name == "recursor.trace"]
    assert len(reports) == 1 and "disk full" in caplog.text


def test_a_failing_sink_does_not_end_the_run(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("sink bug")

    root = FunctionLM(lambda m: "FINAL(ok)")
    with caplog.at_level(logging.ERROR, logger="recursor.trace"):
        result = RLM(root, environment="inprocess", sinks=[broken]).completion("q", "c")
    assert result.answer == "ok"
    assert "sink bug" in caplog.text
