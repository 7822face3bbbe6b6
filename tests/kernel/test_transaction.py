"""Tests for helixlab.kernel._transaction: a reload split at its swap (prepare, commit, abort)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import helixlab as hx
from helixlab.errors import ReloadError


def load(kernel, make_plugin):
    kernel.register(make_plugin("a", config_model=dict))
    kernel.register(make_plugin("b", deps=("a",), config_model=dict))
    kernel.load_all()
    return kernel.get("a"), kernel.get("b")


def test_prepare_starts_the_new_set_aside_and_commit_swaps_it_in(kernel, make_plugin, journal):
    old_a, old_b = load(kernel, make_plugin)
    journal.clear()
    prepared = kernel.prepare(hx.Change.reload(make_plugin("a", version="2.0.0")))
    assert prepared.state == "prepared" and prepared.order == ["a", "b"]
    assert journal == [
        ("init", "a", "2.0.0"),
        ("start", "a", "2.0.0"),
        ("init", "b", "1.0.0"),
        ("start", "b", "1.0.0"),
    ]
    assert (kernel.get("a"), kernel.get("b")) == (old_a, old_b)  # nothing swapped yet
    assert kernel.plugin_class("a").version == "1.0.0"
    report = prepared.commit()
    assert report.ok and report.order == ["a", "b"] and report.stopped == ["b", "a"]
    assert kernel.get("a").version == "2.0.0" and kernel.get("b") is not old_b
    assert kernel.plugin_class("a").version == "2.0.0"
    assert journal[-2:] == [("stop", "b", "1.0.0"), ("stop", "a", "1.0.0")]
    assert prepared.state == "committed"
    with pytest.raises(ReloadError, match="already committed"):
        prepared.abort()


def test_abort_rolls_back_as_a_failed_reload_does(kernel, make_plugin, journal):
    old_a, old_b = load(kernel, make_plugin)
    journal.clear()
    prepared = kernel.prepare(hx.Change.reload("a"))
    report = prepared.abort()
    assert report.rolled_back and report.phase == "abort"
    assert journal[-2:] == [("stop", "b", "1.0.0"), ("stop", "a", "1.0.0")]  # the new ones
    assert (kernel.get("a"), kernel.get("b")) == (old_a, old_b)
    assert [e.kind for e in kernel.events()][-3:] == ["reload_failed", "rolled_back", "rolled_back"]
    assert kernel.state("a") == kernel.state("b") == hx.PluginState.ACTIVE
    assert kernel.reload("a").ok  # the lock was released
    with pytest.raises(ReloadError, match="already aborted"):
        prepared.commit()


def test_leaving_the_block_without_commit_aborts(kernel, make_plugin):
    old_a, _ = load(kernel, make_plugin)
    with kernel.prepare(hx.Change.reload("a")) as prepared:
        pass
    assert prepared.state == "aborted" and kernel.get("a") is old_a
    with kernel.prepare(hx.Change.configure("a", {"x": 1})) as prepared:
        prepared.commit()
    assert kernel.get("a") is not old_a and kernel.entry("a").config == {"x": 1}


def test_an_abandoned_prepare_aborts_by_itself_after_its_timeout(kernel, make_plugin, seen):
    old_a, _ = load(kernel, make_plugin)
    expired = seen("rolled_back", "kernel")
    prepared = kernel.prepare(hx.Change.reload("a"), timeout=0.05)
    assert expired.wait(5)
    assert prepared.state == "aborted" and prepared.expired
    assert kernel.get("a") is old_a
    with pytest.raises(ReloadError, match="timeout expired"):
        prepared.commit()
    assert kernel.reload("a").ok


def test_other_operations_wait_for_the_commit(kernel, make_plugin):
    load(kernel, make_plugin)
    prepared = kernel.prepare(hx.Change.reload("a"))
    queued, seen_kinds = [], []
    kernel.subscribe(lambda e: seen_kinds.append((e.kind, e.plugin)))
    done = threading.Event()
    thread = threading.Thread(target=lambda: (queued.append(kernel.reload("b")), done.set()))
    thread.start()
    prepared.commit()
    assert done.wait(10)
    thread.join()
    kinds = [k for k in seen_kinds if k[0] in ("reloaded", "reloading")]
    assert kinds[:2] == [("reloaded", "a"), ("reloaded", "b")]  # the commit came first
    assert kinds[2] == ("reloading", "b")


def test_a_failing_prepare_raises_and_releases_the_kernel(kernel, make_plugin):
    old_a, _ = load(kernel, make_plugin)

    def start(self, ctx):
        raise RuntimeError("boom")

    with pytest.raises(ReloadError, match="boom") as info:
        kernel.prepare(hx.Change.reload(make_plugin("a", version="2", start=start)))
    assert info.value.phase == "start" and info.value.report.rolled_back
    assert kernel.get("a") is old_a
    assert kernel.reload("a").ok


def test_prepare_define_and_apply_config(kernel, make_plugin):
    load(kernel, make_plugin)
    prepared = kernel.prepare(
        hx.Change.define(
            [make_plugin("a", version="3", config_model=dict), make_plugin("c")], source="x"
        )
    )
    assert prepared.order == ["a", "b"] and "c" not in kernel
    report = prepared.commit()
    assert kernel.get("a").version == "3" and report.loaded == ["c"]
    prepared = kernel.prepare(hx.Change.apply_config({"plugins": {"b": {"config": {"k": 2}}}}))
    assert kernel.entry("b").config == {}
    prepared.commit()
    assert kernel.entry("b").config == {"k": 2}


def test_async_twins(make_plugin):
    async def main() -> None:
        async with hx.Kernel() as kernel:
            await kernel.aregister(make_plugin("a", config_model=dict))
            await kernel.aload_all()
            old = kernel.get("a")
            prepared = await kernel.aprepare(hx.Change.reload("a"))
            await prepared.aabort()
            assert kernel.get("a") is old
            async with await kernel.aprepare(hx.Change.configure("a", {"n": 1})) as prepared:
                report = await prepared.acommit()
            assert report.ok and kernel.get("a") is not old

    asyncio.run(main())


def test_close_aborts_a_pending_prepare(make_kernel, make_plugin, journal):
    kernel = make_kernel()
    kernel.register(make_plugin("a", config_model=dict))
    kernel.load_all()
    prepared = kernel.prepare(hx.Change.reload("a"))
    kernel.close()
    assert prepared.state == "aborted"
    assert journal.phases("stop") == ["a", "a"]  # the new instance, then the old one


def test_a_commit_while_the_abort_rolls_back_is_refused(make_kernel, make_plugin):
    """An abort (its timeout, close, the caller) stopping the new instances is already an
    abort: a commit meanwhile is refused, and never swaps in what is being stopped."""
    kernel = make_kernel(timeouts={"stop": 30})
    old_a, _ = load(kernel, make_plugin)
    stopping, release = threading.Event(), threading.Event()

    def stop(self, ctx):
        stopping.set()
        assert release.wait(20)

    prepared = kernel.prepare(hx.Change.reload(make_plugin("a", version="2", stop=stop)))
    aborted = []
    thread = threading.Thread(target=lambda: aborted.append(prepared.abort()))
    thread.start()
    try:
        assert stopping.wait(10)  # the rollback stops the new "a"
        with pytest.raises(ReloadError, match="already aborted"):
            prepared.commit()
    finally:
        release.set()
        thread.join(20)
    assert aborted and aborted[0].rolled_back
    assert kernel.get("a") is old_a and kernel.plugin_class("a").version == "1.0.0"
    assert kernel.reload("a").ok
