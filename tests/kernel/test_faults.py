"""A plugin raising or hanging in each phase, during load and during reload.

After each fault: the error names the plugin and the phase, the states, events and live
instances agree, and whatever was serving before still serves.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import helixlab as hx
from helixlab.errors import PluginError, PluginNotFoundError, PluginTimeoutError, ReloadError

SHORT = hx.Timeouts(
    init=0.2, start=0.2, stop=0.2, health=0.2, export_state=0.2, import_state=0.2, drain=1
)
MODES = ["raise", "hang"]


def faulty(phase: str, mode: str, normal=None, armed=None):
    """A lifecycle method that raises or hangs forever (once ``armed``, if given)."""

    async def method(self, *args):
        if armed is None or armed:
            if mode == "raise":
                raise RuntimeError(f"{phase} exploded")
            await asyncio.Event().wait()  # never set: only the timeout ends this
        return normal(self, *args) if normal else None

    return method


def reason(phase: str, mode: str) -> str:
    """What reports and events say went wrong."""
    return (
        "TimeoutError: no answer within 0.2s"
        if mode == "hang"
        else f"RuntimeError: {phase} exploded"
    )


def expect_fault(error: PluginError, plugin: str, phase: str, mode: str) -> None:
    assert (error.plugin, error.phase) == (plugin, phase)
    if mode == "hang":
        assert isinstance(error, PluginTimeoutError) or isinstance(error.cause, TimeoutError)
        assert "within 0.2s" in str(error)
    else:
        assert "RuntimeError" in str(error) and f"{phase} exploded" in str(error)
    assert repr(plugin) in str(error) and phase in str(error)


@pytest.fixture(params=["asyncio", "uvloop"])
def kernel(make_kernel, request):
    k = make_kernel(timeouts=SHORT, loop=request.param)  # every guarantee on both loops
    assert k.loop_kind == request.param
    return k


# -- during load -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("phase", ["init", "start"])
def test_load_fault_fails_the_plugin_skips_its_dependents_spares_the_rest(
    kernel, make_plugin, phase, mode
):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("bad", deps=("a",), **{phase: faulty(phase, mode)}))
    kernel.register(make_plugin("user", deps=("bad",)))
    kernel.register(make_plugin("other"))
    report = kernel.load_all()

    assert report.order == ["a", "other"]
    expect_fault(report.failed["bad"], "bad", phase, mode)
    assert report.skipped == {"user": "needs 'bad', which failed"}
    states = {n: kernel.state(n).value for n in kernel.names}
    assert states == {"a": "active", "bad": "failed", "user": "registered", "other": "active"}
    last = kernel.events("bad")[-1]
    assert (last.kind, last.detail) == ("failed", f"in {phase}")
    assert kernel.events("user")[-1].kind == "skipped"
    assert {r.name: r.error for r in kernel.info()}["bad"] == f"{phase}: {reason(phase, mode)}"
    assert f"failed  bad in {phase}: {reason(phase, mode)}" in str(report)
    with pytest.raises(PluginNotFoundError):
        kernel.get("bad")
    with kernel.lease() as lease:
        assert set(lease.instances) == {"a", "other"}

    # a fixed class brings the failed plugin and its skipped dependent up
    fixed = kernel.reload(make_plugin("bad", deps=("a",), version="1.0.1"))
    assert fixed.loaded == ["bad", "user"]
    assert kernel.state("user") == hx.PluginState.ACTIVE


@pytest.mark.parametrize("mode", MODES)
def test_stop_fault_on_unload_is_reported_and_the_plugin_is_still_unloaded(
    kernel, make_plugin, mode
):
    kernel.register(make_plugin("bad", stop=faulty("stop", mode)))
    kernel.register(make_plugin("other"))
    kernel.load_all()
    assert kernel.unload("bad") == ["bad"]
    assert kernel.state("bad") == hx.PluginState.STOPPED
    failed = [e for e in kernel.events("bad") if e.kind == "failed"]
    assert [e.detail for e in failed] == ["in stop"]
    assert "'bad'" in failed[0].error and "stop" in failed[0].error
    assert kernel.events("bad")[-1].kind == "unloaded"
    with pytest.raises(PluginNotFoundError):
        kernel.get("bad")
    assert kernel.state("other") == hx.PluginState.ACTIVE


@pytest.mark.parametrize("mode", MODES)
def test_stop_fault_on_close_does_not_keep_the_others_from_stopping(
    make_kernel, make_plugin, journal, mode
):
    k = make_kernel(timeouts=SHORT)
    k.register(make_plugin("a"))
    k.register(make_plugin("bad", deps=("a",), stop=faulty("stop", mode)))
    k.load_all()
    k.close()
    assert journal.phases("stop") == ["a"]  # bad's stop failed; a was still stopped
    assert [e.kind for e in k.events("bad")][-2:] == ["failed", "stopped"]


@pytest.mark.parametrize("mode", MODES)
def test_health_fault_is_unhealthy_and_leaves_the_plugin_active(kernel, make_plugin, mode):
    kernel.register(make_plugin("bad", health_check=faulty("health", mode)))
    kernel.load_all()
    status = kernel.health()["bad"]
    assert not status.healthy
    assert status.detail == ("no answer within 0.2s" if mode == "hang" else "RuntimeError: "
                             "health exploded")  # fmt: skip
    assert kernel.state("bad") == hx.PluginState.ACTIVE
    assert kernel.events("bad")[-1].kind == "health_changed"


def test_define_reports_a_new_plugin_that_fails_to_load(kernel, make_plugin):
    with pytest.raises(ReloadError) as info:
        kernel.define([make_plugin("bad", init=faulty("init", "raise"))], source="cell")
    expect_fault(info.value, "bad", "init", "raise")
    assert "was registered but failed in init" in str(info.value)
    assert kernel.state("bad") == hx.PluginState.FAILED


# -- during reload -----------------------------------------------------------------------


def chain_with_fault(kernel, make_plugin, phase: str, mode: str, armed: list) -> None:
    """a <- b <- c and an unrelated d; b's ``phase`` misbehaves once ``armed``."""

    def export_state(self):
        return {"hits": 1}

    def import_state(self, state):
        self.hits = state["hits"]

    methods = {"export_state": export_state, "import_state": import_state}
    normal = methods.get(phase)
    methods[phase] = faulty(phase, mode, normal=normal, armed=armed)
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",), **methods))
    kernel.register(make_plugin("c", deps=("b",)))
    kernel.register(make_plugin("d"))
    kernel.load_all()
    armed.append(True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("phase", ["export_state", "init", "import_state", "start"])
def test_reload_fault_rolls_back_and_the_old_set_keeps_serving(
    kernel, make_plugin, journal, phase, mode
):
    armed: list = []
    chain_with_fault(kernel, make_plugin, phase, mode, armed)
    before = {n: kernel.get(n) for n in "abcd"}
    count = len(kernel.events())
    journal.clear()

    with pytest.raises(ReloadError) as info:
        kernel.reload("a")

    expect_fault(info.value, "b", phase, mode)
    assert "rolled back" in str(info.value) and "old versions keep serving" in str(info.value)
    report = info.value.report
    assert report.rolled_back and (report.plugin, report.phase) == ("b", phase)
    assert report.started == ["a"]
    assert report.error == reason(phase, mode)
    # the new a (already started) was stopped; no old instance was touched
    assert journal.phases("stop") == ["a"]
    assert {n: kernel.get(n) for n in "abcd"} == before
    with kernel.lease() as lease:
        assert dict(lease.instances) == before
    assert {kernel.state(n) for n in "abcd"} == {hx.PluginState.ACTIVE}
    assert [kernel.reload_count(n) for n in "abcd"] == [0, 0, 0, 0]
    kinds = [(e.kind, e.plugin) for e in kernel.events()[count:]]
    assert kinds[:3] == [("reloading", "a"), ("reloading", "b"), ("reloading", "c")]
    assert kinds[-4:] == [
        ("reload_failed", "b"),
        ("rolled_back", "a"),
        ("rolled_back", "b"),
        ("rolled_back", "c"),
    ]
    assert ("reloaded", "a") not in kinds

    # disarmed, the same reload goes through
    armed.clear()
    assert kernel.reload("a").order == ["a", "b", "c"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("phase", ["init", "start"])
def test_fault_in_the_new_class_keeps_the_old_class_registered(kernel, make_plugin, phase, mode):
    kernel.register(make_plugin("a"))
    kernel.load_all()
    old = kernel.get("a")
    with pytest.raises(ReloadError) as info:
        kernel.reload(make_plugin("a", version="2.0.0", **{phase: faulty(phase, mode)}))
    expect_fault(info.value, "a", phase, mode)
    assert info.value.version == "2.0.0"
    assert kernel.get("a") is old and kernel.plugin_class("a").version == "1.0.0"
    assert kernel.info()[0].version == "1.0.0"


def test_a_plain_method_blocking_its_thread_times_out_and_rolls_back(kernel, make_plugin):
    release = threading.Event()

    def start(self, ctx):
        release.wait()  # a blocking call that never returns on its own

    kernel.register(make_plugin("a"))
    kernel.load_all()
    old = kernel.get("a")
    try:
        with pytest.raises(ReloadError) as info:
            kernel.reload(make_plugin("a", version="2.0.0", start=start))
        expect_fault(info.value, "a", "start", "hang")
        assert kernel.get("a") is old
        assert kernel.health()["a"].healthy  # the kernel loop was never blocked
    finally:
        release.set()


@pytest.mark.parametrize("mode", MODES)
def test_stop_fault_of_an_old_instance_does_not_undo_a_reload(kernel, make_plugin, mode):
    kernel.register(make_plugin("a", stop=faulty("stop", mode)))
    kernel.load_all()
    report = kernel.reload(make_plugin("a", version="2.0.0"))
    assert report.ok and report.stopped == ["a"]
    assert kernel.get("a").version == "2.0.0"
    assert kernel.state("a") == hx.PluginState.ACTIVE
    failed = [e for e in kernel.events("a") if e.kind == "failed"]
    assert [(e.version, e.detail) for e in failed] == [("1.0.0", "in stop")]


@pytest.mark.parametrize("mode", MODES)
def test_stop_fault_of_a_restart_plugin_refuses_the_reload_and_keeps_it(
    kernel, make_plugin, journal, mode
):
    kernel.register(make_plugin("port", reload_strategy="restart", stop=faulty("stop", mode)))
    kernel.load_all()
    old = kernel.get("port")
    journal.clear()
    with pytest.raises(ReloadError) as info:
        kernel.reload("port")
    expect_fault(info.value, "port", "stop", mode)
    assert journal == []  # no new instance was created
    if mode == "hang":
        # its stop may still be running: it is not served, nor started again, but failed
        assert kernel.state("port") == hx.PluginState.FAILED
        assert "port" not in kernel._pool.current.live
        assert "stop" in kernel.info()[0].error
    else:
        assert kernel.get("port") is old


@pytest.mark.parametrize("mode", MODES)
def test_a_restart_plugin_whose_new_instance_fails_gets_its_old_one_back(
    kernel, make_plugin, journal, mode
):
    kernel.register(make_plugin("port", reload_strategy="restart"))
    kernel.register(make_plugin("user", deps=("port",)))
    kernel.load_all()
    before = kernel.get("port"), kernel.get("user")
    journal.clear()
    with pytest.raises(ReloadError) as info:
        kernel.reload(make_plugin("port", version="2", start=faulty("start", mode)))
    expect_fault(info.value, "port", "start", mode)
    assert (kernel.get("port"), kernel.get("user")) == before
    assert journal[-1] == ("start", "port", "1.0.0")  # the old instance restarted
    assert kernel.state("port") == hx.PluginState.ACTIVE
