"""The suite's own helpers: ``make_kernel`` (conftest) and ``wait_until`` (_waiting)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import helixlab as hx

from _waiting import wait_until
from conftest import FAST


@pytest.fixture
def closed_after() -> Iterator[list[hx.Kernel]]:
    """Kernels that must be closed once the test's other fixtures are torn down."""
    kernels: list[hx.Kernel] = []
    yield kernels
    assert kernels and not any(k.running for k in kernels), "make_kernel left a kernel open"


def test_make_kernel_takes_timeouts_or_overrides_of_fast(closed_after, make_kernel):
    assert make_kernel().timeouts == FAST
    assert make_kernel(timeouts={"drain": 0.2}).timeouts == hx.Timeouts(
        init=2, start=2, stop=2, health=0.5, export_state=2, import_state=2, drain=0.2
    )
    assert make_kernel(timeouts=hx.Timeouts(start=30)).timeouts == hx.Timeouts(start=30)
    uv = make_kernel(loop="uvloop", event_log_size=1)  # any other keyword goes to Kernel
    assert uv.loop_kind == "uvloop" and uv.running
    uv.register(type("One", (hx.Plugin,), {"name": "one"}))
    uv.register(type("Two", (hx.Plugin,), {"name": "two"}))
    assert [e.plugin for e in uv.events()] == ["two"]
    closed_after.extend([uv, make_kernel()])


def test_make_kernel_applies_a_config_and_closes_what_it_made(closed_after, make_kernel):
    k = make_kernel("plugins:\n  rate-limiter:\n    config: {burst_size: 3}\n")
    assert k.load_all().ok and k.state("rate-limiter") == hx.PluginState.ACTIVE
    closed_after.append(k)


def test_the_kernel_fixture_is_a_fast_kernel(closed_after, kernel):
    assert kernel.timeouts == FAST and kernel.running
    closed_after.append(kernel)


def test_wait_until_returns_the_value_that_holds():
    start = time.monotonic()
    assert wait_until(lambda: time.monotonic() - start > 0.05 and "done", 5, "50 ms") == "done"
    n = iter(range(100))
    assert wait_until(lambda: next(n), 5, "3", holds=lambda v: v == 3) == 3


def test_wait_until_fails_in_time_naming_what_and_the_last_value_seen():
    start = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        wait_until(lambda: {"workers": 1}, 0.3, "both workers serving", holds=lambda s: False)
    assert 0.3 <= time.monotonic() - start < 2
    assert str(failed.value) == ("both workers serving: not within 0.3s; last seen: {'workers': 1}")


def test_wait_until_does_not_hide_what_the_condition_raised():
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 / 0, 5, "never")
