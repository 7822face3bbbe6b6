"""Tests for helixlab.kernel._events: the bounded log, subscribers, watch() and awatch()."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from helixlab.kernel import EventLog


def test_events_are_numbered_in_order_and_the_log_keeps_only_the_newest():
    log = EventLog(maxlen=3)
    for i in range(5):
        log.emit("started", f"p{i}", "1.0")
    events = log.events()
    assert [(e.seq, e.plugin) for e in events] == [(3, "p2"), (4, "p3"), (5, "p4")]
    assert log.maxlen == 3


def test_events_filter_by_plugin_and_limit():
    log = EventLog()
    log.emit("registered", "a")
    log.emit("registered", "b")
    log.emit("started", "a", "1.0", detail="ok")
    assert [e.kind for e in log.events(plugin="a")] == ["registered", "started"]
    assert [e.plugin for e in log.events(limit=2)] == ["b", "a"]
    assert log.events(limit=0) == []


def test_an_event_reads_as_one_line_without_its_time():
    event = EventLog().emit("failed", "limiter", "1.2.0", detail="in start", error="boom")
    assert str(event) == "#1 failed        limiter 1.2.0: in start (boom)"
    assert repr(event) == f"PluginEvent({event})"


def test_subscribers_get_each_event_until_they_unsubscribe():
    log = EventLog()
    got = []
    unsubscribe = log.subscribe(got.append)
    log.emit("started", "a")
    unsubscribe()
    unsubscribe()  # idempotent
    log.emit("stopped", "a")
    assert [e.kind for e in got] == ["started"]


def test_a_failing_subscriber_is_logged_and_does_not_stop_the_others(caplog):
    log = EventLog()
    got = []

    def broken(event):
        raise RuntimeError("subscriber bug")

    log.subscribe(broken)
    log.subscribe(got.append)
    with caplog.at_level(logging.ERROR, logger="helixlab.events"):
        event = log.emit("started", "a")
    assert got == [event]
    assert "subscriber" in caplog.text and "subscriber bug" in caplog.text


def test_watch_receives_events_emitted_after_it_was_called_from_another_thread():
    log = EventLog()
    events = log.watch(timeout=5)
    emitter = threading.Thread(target=lambda: [log.emit("started", f"p{i}") for i in range(3)])
    emitter.start()
    got = [next(events).plugin for _ in range(3)]
    emitter.join()
    events.close()
    assert got == ["p0", "p1", "p2"]


def test_watch_ends_after_the_idle_timeout_and_unsubscribes():
    log = EventLog()
    with log.watch(timeout=0.01) as events:
        log.emit("started", "a")
        assert [e.plugin for e in events] == ["a"]
    log.emit("stopped", "a")  # nobody left to deliver to
    assert log._subscribers == ()


def test_awatch_delivers_events_from_another_thread_to_the_callers_loop():
    log = EventLog()

    async def main():
        watcher = log.awatch()
        first = asyncio.ensure_future(anext(watcher))
        await asyncio.sleep(0)  # let awatch subscribe
        threading.Thread(target=log.emit, args=("reloaded", "a")).start()
        event = await asyncio.wait_for(first, 5)
        await watcher.aclose()
        return event

    assert asyncio.run(main()).kind == "reloaded"


@pytest.mark.parametrize("maxlen", [1, 10])
def test_kernel_event_log_size_bounds_its_log(maxlen):
    import helixlab as hx

    with hx.Kernel(event_log_size=maxlen) as k:
        for i in range(12):
            k.register(type(f"P{i}", (hx.Plugin,), {"name": f"p{i}"}))
        assert len(k.events()) == maxlen
        assert k.events()[-1].plugin == "p11"
