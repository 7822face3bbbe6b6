"""Interrupts (Jupyter's interrupt button: KeyboardInterrupt in the calling thread) at every
point of load, reload, configure, prepare/commit and close.

Each test interrupts the main thread with a real SIGINT from inside a plugin phase (or an
event subscriber) and lets the phase go on only once the kernel has taken the interrupt
(event ``interrupted``), so every point is hit deterministically. Afterwards the kernel is
in one consistent state (the old set serving, or the new one), states, events and live
instances agree, and the next operation works.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import pytest

import helixlab as hx

from test_fault_matrix import assert_consistent

ACTIVE = hx.PluginState.ACTIVE
LONG_DRAIN = hx.Timeouts(
    init=5, start=5, stop=5, health=1, export_state=5, import_state=5, drain=60
)


@pytest.fixture(params=["asyncio", "uvloop"])
def kernel(make_kernel, request):
    k = make_kernel(timeouts=LONG_DRAIN, loop=request.param)  # every guarantee on both loops
    assert k.loop_kind == request.param
    return k


class Interrupter:
    """Presses the interrupt button from inside a phase, then waits for the kernel to take it."""

    def __init__(self, kernel: hx.Kernel):
        self.taken = threading.Event()
        self.armed = False
        self._async: asyncio.Event | None = None
        kernel.subscribe(self._seen)

    def _seen(self, event: hx.PluginEvent) -> None:
        if event.kind == "interrupted":
            self.taken.set()
            if self._async is not None:
                self._async.set()

    def press(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    def plain(self, *_: Any) -> None:
        """A plain phase: interrupt, wait for the kernel to take it, finish normally."""
        if self.armed:
            self.armed = False
            self.press()
            assert self.taken.wait(10)

    async def coroutine(self, *_: Any) -> None:
        if self.armed:
            self.armed = False
            self._async = asyncio.Event()
            self.press()
            await self._async.wait()


def phase_method(interrupter: Interrupter, phase: str, kind: str):
    if kind == "plain":

        def method(self, *args):
            interrupter.plain()
            return {"n": 1} if phase == "export_state" else None

    else:

        async def method(self, *args):
            await interrupter.coroutine()
            return {"n": 1} if phase == "export_state" else None

    return method


def three(kernel, make_plugin, **b_methods):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",), config_model=dict, **b_methods))
    kernel.register(make_plugin("c", deps=("b",)))
    kernel.load_all()
    return {n: kernel.get(n) for n in "abc"}


def instances(kernel):
    return {n: kernel.get(n) for n in kernel.names if kernel.state(n) == ACTIVE}


@pytest.mark.parametrize("kind", ["plain", "async"])
@pytest.mark.parametrize("phase", ["export_state", "init", "import_state", "start"])
def test_an_interrupt_before_the_swap_rolls_back(kernel, make_plugin, phase, kind):
    press = Interrupter(kernel)
    methods = {phase: phase_method(press, phase, kind)}
    if phase == "import_state":
        methods["export_state"] = lambda self: {"n": 1}
    before = three(kernel, make_plugin, **methods)
    press.armed = True
    with pytest.raises(KeyboardInterrupt):
        kernel.reload("a")
    assert press.taken.is_set() and not press.armed
    assert instances(kernel) == before  # the old set serves, untouched
    # a start abandoned at the interrupt is stopped whenever it returns: not counted here
    kinds = [(e.kind, e.plugin) for e in kernel.events() if "abandoned" not in e.detail]
    assert ("reloaded", "a") not in kinds
    failed = [e for e in kernel.events() if e.kind == "reload_failed"]
    assert failed[-1].detail == "in interrupt"
    assert kinds[-3:] == [("rolled_back", "a"), ("rolled_back", "b"), ("rolled_back", "c")]
    assert_consistent(kernel)
    report = kernel.reload("a")  # the next operation works
    assert report.ok and report.order == ["a", "b", "c"]


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_an_interrupt_after_the_swap_finishes_the_reload(kernel, make_plugin, journal, kind):
    press = Interrupter(kernel)
    before = three(kernel, make_plugin, stop=phase_method(press, "stop", kind))
    press.armed = True
    with pytest.raises(KeyboardInterrupt) as caught:
        kernel.reload("a")
    assert str(caught.value) == (
        "Reload of a interrupted after its swap: finished, the new versions serve."
    )
    now = instances(kernel)
    assert all(now[n] is not before[n] for n in "abc")  # the new set serves
    assert journal.phases("stop") == ["c", "a"]  # b's own stop is the method under test
    assert_consistent(kernel)
    assert kernel.reload("b").ok


def test_an_interrupt_during_the_drain_ends_it_and_stops_the_old(kernel, make_plugin, journal):
    press = Interrupter(kernel)
    before = three(kernel, make_plugin)

    def on_swap(event: hx.PluginEvent) -> None:  # on the kernel's loop, inside the commit
        if (event.kind, event.plugin) == ("reloaded", "c"):
            unsubscribe()
            press.press()

    unsubscribe = kernel.subscribe(on_swap)
    lease = kernel.lease()  # never released: only the interrupt can end the 60 s drain
    with pytest.raises(KeyboardInterrupt):
        kernel.reload("a")
    assert press.taken.is_set()
    assert lease.abandoned  # the work on the old set learns its instances are gone
    assert all(instances(kernel)[n] is not before[n] for n in "abc")
    assert journal.phases("stop") == ["c", "b", "a"]
    stopping = [e for e in kernel.events() if e.kind == "stopping"]
    assert "drain cut short by an interrupt" in stopping[-1].detail
    lease.release()
    assert_consistent(kernel)
    assert kernel.reload("a").timings["drain"] < 5  # the abandoned generation is not waited on


@pytest.mark.parametrize("where", ["stop", "start"])
def test_an_interrupt_in_a_restart_reload_gives_the_old_instance_back(
    kernel, make_plugin, journal, where
):
    press = Interrupter(kernel)
    methods = {where: phase_method(press, where, "plain")}
    kernel.register(make_plugin("port", reload_strategy="restart", **methods))
    kernel.load_all()
    old = kernel.get("port")
    journal.clear()
    press.armed = True
    with pytest.raises(KeyboardInterrupt):
        kernel.reload("port")
    if where == "stop":  # the old instance stopped (fully), then was started again
        assert journal == [("start", "port", "1.0.0")]
    else:  # old stopped; the new one started, was stopped; the old started again (unjournaled)
        stop, init = ("stop", "port", "1.0.0"), ("init", "port", "1.0.0")
        assert journal == [stop, init, stop]
    assert kernel.get("port") is old and kernel.state("port") == ACTIVE
    assert_consistent(kernel)
    assert kernel.reload("port").ok


def test_an_interrupted_load_keeps_what_started_and_begins_nothing_more(kernel, make_plugin):
    press = Interrupter(kernel)
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",), start=phase_method(press, "start", "plain")))
    kernel.register(make_plugin("c", deps=("b",)))
    press.armed = True
    with pytest.raises(KeyboardInterrupt):
        kernel.load_all()
    assert [kernel.state(n) for n in "abc"] == [ACTIVE, ACTIVE, hx.PluginState.REGISTERED]
    assert kernel.events("c")[-1].kind == "skipped"
    assert_consistent(kernel)
    assert kernel.load_all().order == ["c"]


def test_an_interrupted_configure_leaves_the_old_config(kernel, make_plugin):
    press = Interrupter(kernel)
    before = three(kernel, make_plugin, init=phase_method(press, "init", "plain"))
    press.armed = True
    with pytest.raises(KeyboardInterrupt):
        kernel.configure("b", {"level": 3})
    assert kernel.entry("b").config == {} and instances(kernel) == before
    assert_consistent(kernel)
    assert kernel.configure("b", {"level": 3}).ok and kernel.entry("b").config == {"level": 3}


def test_an_interrupted_prepare_releases_the_kernel(kernel, make_plugin):
    press = Interrupter(kernel)
    before = three(kernel, make_plugin, start=phase_method(press, "start", "plain"))
    press.armed = True
    with pytest.raises(KeyboardInterrupt):
        kernel.prepare(hx.Change.reload("b"))
    assert instances(kernel) == before and kernel._ops.prepared is None
    assert kernel.reload("b").ok


def test_cancelling_an_async_caller_rolls_back_like_an_interrupt(kernel, make_plugin):
    taken = threading.Event()
    kernel.subscribe(lambda e: taken.set() if e.kind == "interrupted" else None)
    caller: dict[str, Any] = {}

    async def init(self, ctx, config):
        if "task" in caller:
            caller["loop"].call_soon_threadsafe(caller.pop("task").cancel)
            await asyncio.to_thread(taken.wait, 10)

    before = three(kernel, make_plugin, init=init)

    async def main() -> None:
        caller.update(task=asyncio.current_task(), loop=asyncio.get_running_loop())
        await kernel.areload("a")

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert taken.is_set() and instances(kernel) == before
    assert_consistent(kernel)
    assert kernel.reload("a").ok


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_interrupted_close_still_stops_everything(make_kernel, make_plugin, journal, loop):
    kernel = make_kernel(timeouts=LONG_DRAIN, loop=loop)
    press = Interrupter(kernel)

    def stop(self, ctx):
        os.kill(os.getpid(), signal.SIGINT)

    three(kernel, make_plugin, stop=stop)
    with pytest.raises(KeyboardInterrupt):
        kernel.close()
    assert kernel._ops.closed and press.taken.is_set()  # "closing goes on"
    assert journal.phases("stop") == ["c", "a"]  # b's stop is the one above
    assert {kernel.state(n) for n in "abc"} == {hx.PluginState.STOPPED}


# -- an interrupt during a slow start: rolled back at once, said in one line -----------------


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_an_interrupt_during_a_slow_start_rolls_back_within_a_second(kernel, make_plugin, kind):
    """Jupyter's interrupt button while a new version's start() takes its time (start timeout:
    30 s): the start is abandoned at once, as at its timeout, and stopped when it returns."""
    began, release, pressed = threading.Event(), threading.Event(), []
    if kind == "plain":

        def start(self, ctx):
            if self.version == "2.0.0":
                began.set()
                release.wait(30)

    else:

        async def start(self, ctx):
            if self.version == "2.0.0":
                began.set()
                try:
                    await asyncio.to_thread(release.wait, 30)
                except asyncio.CancelledError:  # a start that goes on when cancelled
                    await asyncio.to_thread(release.wait, 30)

    kernel.timeouts = hx.Timeouts(start=30, stop=5)
    kernel.register(make_plugin("slow", start=start))
    kernel.register(make_plugin("user", deps=("slow",)))
    kernel.load_all()
    old = {n: kernel.get(n) for n in ("slow", "user")}
    late_stop = threading.Event()
    kernel.subscribe(lambda e: late_stop.set() if "abandoned instance" in e.detail else None)

    def press() -> None:
        assert began.wait(30)
        pressed.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press)
    presser.start()
    with pytest.raises(hx.ReloadInterrupted) as caught:
        kernel.reload(make_plugin("slow", version="2.0.0", start=start))
    took = time.monotonic() - pressed[0]
    presser.join()
    assert took < 1.0, f"the interrupt took {took:.2f}s to roll back"
    assert isinstance(caught.value, KeyboardInterrupt)  # a script still stops
    assert str(caught.value) == (
        "Reload of slow interrupted: rolled back, the old versions keep serving."
    )
    assert caught.value.rolled_back and caught.value.report.rolled_back
    assert {n: kernel.get(n) for n in ("slow", "user")} == old  # the old set serves
    assert kernel.get("slow").version == "1.0.0"
    assert_consistent(kernel)
    release.set()  # the abandoned start returns: that instance is stopped, it never served
    assert late_stop.wait(10), "\n".join(f"{e.kind} {e.plugin} {e.detail}" for e in kernel.events())
    assert kernel.reload("slow").ok  # the next operation works
