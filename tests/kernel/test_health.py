"""Health checks (helixlab/kernel/_health.py), through ``Kernel.health`` and ``Kernel.info``:
each check under its timeout, what counts as unhealthy or degraded, one check in flight per
plugin, failed plugins unhealthy, and a change of health as an event."""

from __future__ import annotations

import threading
import time

import pytest

from helixlab.kernel import Degraded


def test_what_a_check_returns_decides_its_health(kernel, make_plugin):
    answers = {
        "none": lambda self, ctx: None,
        "true": lambda self, ctx: True,
        "false": lambda self, ctx: False,
        "text": lambda self, ctx: "the pool is empty",
        "degraded": lambda self, ctx: Degraded("on the fallback upstream"),
        "raises": lambda self, ctx: 1 / 0,
    }
    for name, answer in answers.items():
        kernel.register(make_plugin(name, health_check=answer))
    kernel.load_all()
    health = kernel.health()
    assert {n: s.healthy for n, s in health.items()} == {
        "degraded": True, "false": False, "none": True, "raises": False, "text": False,
        "true": True,
    }  # fmt: skip
    assert health["text"].detail == "the pool is empty"
    assert health["degraded"].degraded and str(health["degraded"]) == (
        "degraded: degraded (on the fallback upstream)"
    )
    assert "ZeroDivisionError" in health["raises"].detail
    assert str(health["false"]) == "false: unhealthy" and not health["false"]


def test_a_hung_check_is_unhealthy_at_its_timeout_and_not_started_again_while_hung(
    make_kernel, make_plugin
):
    kernel = make_kernel(timeouts={"health": 0.2})
    release = threading.Event()
    calls = []

    def hangs(self, ctx):
        calls.append(1)
        release.wait(30)

    kernel.register(make_plugin("hung", health_check=hangs))
    kernel.register(make_plugin("fine"))
    kernel.load_all()
    try:
        began = time.monotonic()
        first = kernel.health()
        assert time.monotonic() - began < 2
        assert not first["hung"].healthy and first["hung"].detail == "no answer within 0.2s"
        assert first["fine"].healthy
        second = kernel.health()  # its thread is still stuck: answered at once
        assert second["hung"].detail.startswith("still checking")
        assert len(calls) == 1
    finally:
        release.set()


def test_a_failed_plugin_is_unhealthy_with_its_error(kernel, make_plugin):
    def broken(self, ctx):
        raise RuntimeError("no socket")

    kernel.register(make_plugin("bad", start=broken))
    kernel.register(make_plugin("fine"))
    kernel.load_all()
    health = kernel.health()
    assert not health["bad"].healthy and health["bad"].state == "failed"
    assert "no socket" in health["bad"].detail
    rows = {row.name: row.health for row in kernel.info()}
    assert rows == {"bad": "unhealthy", "fine": "healthy"}


def test_info_says_unknown_before_the_first_check_and_dash_when_not_running(kernel, make_plugin):
    kernel.register(make_plugin("a"))
    assert [row.health for row in kernel.info()] == ["-"]  # registered, not running
    kernel.load_all()
    assert [row.health for row in kernel.info()] == ["unknown"]
    kernel.health()
    assert [row.health for row in kernel.info()] == ["healthy"]


@pytest.mark.parametrize("flips", [1, 2])
def test_a_change_of_health_is_one_event(kernel, make_plugin, flips):
    state = {"ok": True}
    kernel.register(make_plugin("a", health_check=lambda self, ctx: state["ok"]))
    kernel.load_all()
    for _ in range(flips):
        kernel.health()
        kernel.health()  # the same answer: no new event
        state["ok"] = not state["ok"]
    kinds = [(e.kind, e.detail) for e in kernel.events("a") if e.kind == "health_changed"]
    assert kinds == [("health_changed", "healthy"), ("health_changed", "unhealthy")][:flips]
