"""Tests for helixlab.kernel._lifecycle and _workers: where plugin methods run, what a
BaseException or a hang of theirs does, and what each instance gets (config, state)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import threading

import pytest

import helixlab as hx
from helixlab.errors import ReloadError

EXITS = [SystemExit, KeyboardInterrupt, GeneratorExit]


def thrower(exc: type[BaseException], kind: str):
    if kind == "plain":

        def method(self, *args):
            raise exc("from the plugin")

    else:

        async def method(self, *args):
            raise exc("from the plugin")

    return method


@pytest.mark.parametrize("kind", ["plain", "async"])
@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_a_base_exception_in_load_is_that_plugins_failure(kernel, make_plugin, exc, kind):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",), start=thrower(exc, kind)))
    report = kernel.load_all()
    assert report.order == ["a"] and report.failed["b"].phase == "start"
    assert exc.__name__ in report.reasons["b"]
    assert kernel.state("b") == hx.PluginState.FAILED
    assert kernel.health()["a"].healthy  # the loop lives
    assert kernel.reload("a").ok


@pytest.mark.parametrize("kind", ["plain", "async"])
@pytest.mark.parametrize("phase", ["init", "start", "stop", "export_state"])
@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_a_base_exception_in_reload_is_that_plugins_failure(kernel, make_plugin, exc, kind, phase):
    kernel.register(make_plugin("a"))
    kernel.load_all()
    old = kernel.get("a")
    bad = make_plugin("a", version="2.0.0", **{phase: thrower(exc, kind)})
    if phase in ("stop", "export_state"):  # methods of the instance being replaced
        kernel.reload(bad)
        old = kernel.get("a")
    if phase == "stop":
        report = kernel.reload("a")  # after the swap: reported, the reload stands
        assert report.ok and kernel.get("a") is not old
        failed = [e for e in kernel.events("a") if e.kind == "failed"]
        assert failed[-1].detail == "in stop" and exc.__name__ in failed[-1].error
    else:
        with pytest.raises(ReloadError) as info:
            kernel.reload("a" if phase == "export_state" else bad)
        assert info.value.phase == phase and exc.__name__ in str(info.value)
        assert kernel.get("a") is old
    assert kernel.health()["a"].healthy
    kernel.register(make_plugin("z"))
    assert kernel.load("z").order == ["z"]


@pytest.mark.parametrize("kind", ["plain", "async"])
@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_a_base_exception_in_a_plugins_constructor_fails_it_in_init(kernel, make_plugin, exc, kind):
    def __init__(self):
        raise exc("from the constructor")

    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",), __init__=__init__, start=thrower(exc, kind)))
    report = kernel.load_all()
    assert report.order == ["a"] and report.failed["b"].phase == "init"
    assert "from the constructor" in report.reasons["b"]
    old = kernel.get("a")
    with pytest.raises(ReloadError) as info:  # a new class of a running plugin: rolled back
        kernel.reload(make_plugin("a", version="2.0.0", __init__=__init__))
    assert info.value.phase == "init" and kernel.get("a") is old
    assert kernel.health()["a"].healthy  # the loop lives
    kernel.register(make_plugin("z"))
    assert kernel.load("z").order == ["z"]


@pytest.mark.parametrize("exc", EXITS, ids=lambda e: e.__name__)
def test_a_base_exception_in_a_health_check_is_unhealthy(kernel, make_plugin, exc):
    kernel.register(make_plugin("a", health_check=thrower(exc, "async")))
    kernel.register(make_plugin("b", health_check=thrower(exc, "plain")))
    kernel.load_all()
    health = kernel.health()
    assert not health["a"].healthy and not health["b"].healthy
    assert exc.__name__ in health["a"].detail
    assert kernel.reload("a").ok


def test_an_async_stop_that_swallows_cancellation_is_abandoned_at_its_timeout(make_plugin):
    release = threading.Event()
    calls = []

    async def stop(self, ctx):
        calls.append("stop")
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                calls.append("swallowed")

    timeouts = hx.Timeouts(stop=0.2, drain=1)
    with hx.Kernel(timeouts=timeouts) as kernel:
        kernel.register(make_plugin("a", stop=stop))
        kernel.register(make_plugin("z"))
        kernel.load_all()
        report = kernel.reload("a")  # returns: nothing awaits the stop past 0.2 s
        assert report.ok and calls == ["stop", "swallowed"]
        failed = [e for e in kernel.events("a") if e.kind == "failed"]
        assert "within 0.2s" in failed[-1].error
        assert kernel.reload("z").ok  # the lock is free
        release.set()


def test_a_drain_that_timed_out_is_not_waited_on_again(make_plugin):
    with hx.Kernel(timeouts=hx.Timeouts(drain=0.2)) as kernel:
        kernel.register(make_plugin("a"))
        kernel.register(make_plugin("b"))
        kernel.load_all()
        lease = kernel.lease()  # a client that never reads its stream
        kernel.reload("a")
        assert lease.abandoned
        count = len(kernel.events())
        report = kernel.reload("b")
        assert report.ok and report.timings["drain"] < 0.2
        assert not [e for e in kernel.events()[count:] if "drain" in e.detail]
        lease.release()


def test_hung_health_checks_never_starve_lifecycle_calls(kernel, make_plugin):
    release = threading.Event()
    calls = []

    def hung(self, ctx):
        calls.append(self.name)
        release.wait()

    for i in range(12):
        kernel.register(make_plugin(f"h{i}", health_check=hung))
    kernel.load_all()
    try:
        first = kernel.health()
        assert all(not s.healthy and "within" in s.detail for s in first.values())
        second = kernel.health()  # one check in flight per plugin: no new thread
        assert all("still checking" in s.detail for s in second.values())
        assert sorted(calls) == sorted(f"h{i}" for i in range(12))

        def init(self, ctx, config):
            calls.append("init")

        kernel.register(make_plugin("fresh", init=init))
        assert kernel.load("fresh").order == ["fresh"]
        assert kernel.reload(make_plugin("fresh", version="2", init=init)).ok
    finally:
        release.set()


def test_a_plain_method_that_hangs_still_times_out(make_plugin):
    release = threading.Event()

    def start(self, ctx):
        release.wait()

    with hx.Kernel(timeouts=hx.Timeouts(start=0.2)) as kernel:
        kernel.register(make_plugin("a"))
        kernel.load_all()
        with pytest.raises(ReloadError, match=r"within 0\.2s"):
            kernel.reload(make_plugin("a", version="2", start=start))
        release.set()


def test_a_hung_plain_stop_does_not_keep_the_process_from_exiting(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            import helixlab as hx

            class Stuck(hx.Plugin):
                name = "stuck"
                def stop(self, ctx):
                    threading.Event().wait()  # never returns

            kernel = hx.Kernel(timeouts=hx.Timeouts(stop=0.2))
            kernel.register(Stuck)
            kernel.load_all()
            kernel.close()
            print("closed", flush=True)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed"


def test_a_restart_plugin_whose_stop_timed_out_never_serves_again(make_plugin):
    release, finished = threading.Event(), threading.Event()

    def stop(self, ctx):
        release.wait()
        finished.set()

    with hx.Kernel(timeouts=hx.Timeouts(stop=0.2)) as kernel:
        kernel.register(make_plugin("port", reload_strategy="restart", stop=stop))
        kernel.register(make_plugin("user", deps=("port",)))
        kernel.load_all()
        with pytest.raises(ReloadError, match=r"within 0\.2s"):
            kernel.reload("port")
        release.set()
        assert finished.wait(10)  # the abandoned stop has now finished
        assert kernel.state("port") == hx.PluginState.FAILED
        assert kernel.state("user") != hx.PluginState.ACTIVE
        assert "port" not in kernel._pool.current.live
        row = {r.name: r for r in kernel.info()}["port"]
        assert row.state == "failed" and "stop" in row.error


def test_every_instance_gets_its_own_config(kernel, make_plugin):
    seen = []

    def init(self, ctx, config):
        seen.append(dict(config))
        config.pop("secret_sauce", None)  # the instance consumes a setting
        config["mine"] = True

    kernel.register(make_plugin("a", init=init, config_model=dict))
    kernel.apply_config({"plugins": {"a": {"config": {"secret_sauce": "x", "n": 1}}}})
    kernel.load_all()
    serving = kernel._pool.current.live["a"].config
    kernel.reload("a")
    kernel.reload("a")
    assert seen == [{"secret_sauce": "x", "n": 1}] * 3
    assert kernel.entry("a").config == {"secret_sauce": "x", "n": 1}
    assert serving == {"n": 1, "mine": True}  # changed only by its own instance


def test_a_pydantic_config_is_copied_per_instance(kernel, make_plugin):
    from pydantic import BaseModel

    class Config(BaseModel):
        tags: list[str] = []

    def init(self, ctx, config):
        config.tags.append(self.version)

    kernel.register(make_plugin("a", init=init, config_model=Config))
    kernel.load_all()
    kernel.reload(make_plugin("a", version="2.0.0", init=init, config_model=Config))
    assert kernel.entry("a").config.tags == []
    assert kernel._pool.current.live["a"].config.tags == ["2.0.0"]


def test_handed_over_state_cannot_change_the_old_instance(kernel, make_plugin):
    def export_state(self):
        return self.state

    def init(self, ctx, config):
        self.state = {"seen": [self.version]}

    def import_state(self, state):
        state["seen"].append("new")  # the new instance changes what it was handed
        self.state = state

    def bad_start(self, ctx):
        raise RuntimeError("no")

    kernel.register(make_plugin("a", init=init, export_state=export_state))
    kernel.load_all()
    old = kernel.get("a")
    with pytest.raises(ReloadError):
        kernel.reload(
            make_plugin("a", version="2", init=init, import_state=import_state, start=bad_start)
        )
    assert kernel.get("a") is old and old.state == {"seen": ["1.0.0"]}


def test_work_bound_to_a_lease_is_cancelled_at_the_drain_deadline(make_plugin):
    with hx.Kernel(timeouts=hx.Timeouts(drain=0.2)) as kernel:
        kernel.register(make_plugin("a"))
        kernel.load_all()
        started = threading.Event()
        outcome: list[str] = []

        async def request() -> None:  # a stream whose client never reads
            lease = kernel.lease().bind()
            try:
                started.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append("abandoned" if lease.abandoned else "cancelled")
                raise
            finally:
                lease.release()

        future = asyncio.run_coroutine_threadsafe(request(), kernel._thread.loop)
        assert started.wait(10)
        report = kernel.reload("a")
        assert report.ok and report.stopped == ["a"]
        with pytest.raises(BaseException):  # noqa: B017 - the request's task was cancelled
            future.result(timeout=10)
        assert outcome == ["abandoned"]


def _on_late_stop(kernel: hx.Kernel) -> threading.Event:
    """Set once the kernel has recorded the stop of an abandoned instance (the event is
    emitted after the plugin's stop() returns, so waiting on stop() alone races it)."""
    seen = threading.Event()
    kernel.subscribe(lambda e: seen.set() if "abandoned instance" in e.detail else None)
    return seen


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_new_instance_that_finishes_starting_after_its_timeout_is_stopped(make_plugin, kind):
    """The reload rolled back at the timeout; when the hung phase does return later, the
    instance it brought up (threads, sockets) serves nobody and is stopped."""
    gate, stopped = threading.Event(), threading.Event()
    instances: list[str] = []

    if kind == "plain":

        def slow(self, *args):
            instances.append(self.version)
            if self.version == "2":
                gate.wait()

        def stop(self, ctx):
            if self.version == "2":
                stopped.set()

    else:

        async def slow(self, *args):
            instances.append(self.version)
            while self.version == "2" and not gate.is_set():
                with contextlib.suppress(asyncio.CancelledError):  # swallowed: it goes on
                    await asyncio.sleep(0.01)

        async def stop(self, ctx):
            if self.version == "2":
                stopped.set()

    with hx.Kernel(timeouts=hx.Timeouts(start=0.3)) as kernel:
        late_stop = _on_late_stop(kernel)
        kernel.register(make_plugin("a", version="1", start=slow, stop=stop))
        kernel.load_all()
        old = kernel.get("a")
        with pytest.raises(ReloadError) as caught:
            kernel.reload(make_plugin("a", version="2", start=slow, stop=stop))
        assert caught.value.phase == "start" and "within 0.3s" in str(caught.value)
        assert kernel.get("a") is old and not stopped.is_set()
        gate.set()
        assert stopped.wait(10) and late_stop.wait(10)  # stop() ran, then its event
        assert kernel.get("a") is old and kernel.state("a") == hx.PluginState.ACTIVE
        assert kernel.reload("a").ok  # and the kernel goes on
    late = [e for e in kernel.events("a") if "abandoned instance" in e.detail]
    assert [(e.kind, e.version) for e in late] == [("stopped", "2")]


def test_an_instance_given_to_register_whose_start_hung_is_not_started_again():
    """The first start of a registered instance times out; loading again makes a new
    instance of its class (the hung one may still be starting); when the hung start
    returns, that instance is stopped, and the one serving is left alone."""
    release, stopped = threading.Event(), threading.Event()
    calls: list[tuple[str, int]] = []

    class Slow(hx.Plugin):
        name, version = "slow", "1.0.0"
        made = 0

        def __init__(self) -> None:
            Slow.made += 1
            self.number = Slow.made

        def start(self, ctx):
            if self.number == 1:
                release.wait()
            calls.append(("start", self.number))

        def stop(self, ctx):
            calls.append(("stop", self.number))
            stopped.set()

    with hx.Kernel(timeouts=hx.Timeouts(start=0.2)) as kernel:
        late_stop = _on_late_stop(kernel)
        instance = Slow()
        kernel.register(instance)
        assert "slow" in kernel.load("slow").failed
        assert kernel.load("slow").order == ["slow"]
        serving = kernel.get("slow")
        assert serving is not instance and serving.number == 2
        release.set()
        assert stopped.wait(10) and late_stop.wait(10)  # stop() ran, then its event
        assert kernel.get("slow") is serving and kernel.state("slow") == hx.PluginState.ACTIVE
        late = [e for e in kernel.events("slow") if "abandoned instance" in e.detail]
        assert len(late) == 1
    assert calls == [("start", 2), ("start", 1), ("stop", 1), ("stop", 2)]


@pytest.mark.parametrize("stop_kind", ["plain", "async", "raises"])
def test_a_start_that_returns_after_close_is_stopped_all_the_same(
    make_kernel, make_plugin, stop_kind
):
    """close() does not wait for a start abandoned at its timeout (it may never return);
    when it does return, the kernel's loop is gone, and the instance it brought up is
    stopped in the thread it returned in, with the same event as while the kernel is open."""
    release, stopped = threading.Event(), threading.Event()

    def start(self, ctx):
        release.wait()

    if stop_kind == "async":

        async def stop(self, ctx):
            await asyncio.sleep(0)
            stopped.set()

    else:

        def stop(self, ctx):
            stopped.set()
            if stop_kind == "raises":
                raise RuntimeError("could not close its socket")

    kernel = make_kernel(timeouts=hx.Timeouts(start=0.2))
    late_stop = _on_late_stop(kernel)
    kernel.register(make_plugin("a", start=start, stop=stop))
    assert "a" in kernel.load("a").failed
    kernel.close()
    assert not stopped.is_set()
    release.set()
    assert stopped.wait(10) and late_stop.wait(10)
    late = [e for e in kernel.events("a") if "abandoned instance" in e.detail]
    assert [e.kind for e in late] == ["stopped"]
    failed = [e for e in kernel.events("a") if e.kind == "failed" and e.detail == "in stop"]
    if stop_kind == "raises":
        assert len(failed) == 1 and "could not close its socket" in failed[0].error
    else:
        assert failed == []
