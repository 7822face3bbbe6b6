"""What the kernel hands back (helixlab/kernel/_reports.py): load and reload reports, plugin
rows and health results, as a notebook shows them: a deterministic ``str`` (no addresses,
ids or timings), the same ``repr`` and pretty display, and comparisons that read naturally."""

from __future__ import annotations

import re

import pytest

import helixlab as hx

MEMORY_ADDRESS = re.compile(r"0x[0-9a-f]{6,}")


def test_a_load_report_lists_what_loaded_failed_and_was_skipped(kernel, make_plugin):
    def broken(self, ctx):
        raise RuntimeError("port 8080 in use")

    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",)))
    kernel.register(make_plugin("bad", start=broken))
    kernel.register(make_plugin("user", deps=("bad",)))
    report = kernel.load_all()
    assert not report.ok and report == ["a", "b"] and list(report) == ["a", "b"]
    assert len(report) == 2 and set(report.failed) == {"bad"} and set(report.skipped) == {"user"}
    lines = str(report).splitlines()
    assert lines[0] == "loaded 2: a -> b"
    assert lines[1] == "failed  bad in start: RuntimeError: port 8080 in use"
    assert lines[2].startswith("skipped user: ")
    assert repr(report) == str(report)


def test_an_empty_load_report_is_ok_and_says_nothing_loaded():
    report = hx.LoadReport()
    assert report.ok and str(report) == "loaded 0: nothing" and report == []
    assert report == hx.LoadReport() and report != hx.LoadReport(order=["a"])


def test_a_reload_report_shows_the_cascade_with_versions_and_strategies(kernel, make_plugin):
    kernel.register(make_plugin("a"))
    kernel.register(make_plugin("b", deps=("a",), reload_strategy="restart"))
    kernel.load_all()
    report = kernel.reload(make_plugin("a", version="2.0.0"))
    assert report.ok and report.order == ["a", "b"] and report.versions["a"] == ("1.0.0", "2.0.0")
    assert str(report).splitlines() == [
        "reloaded a: 2 plugin(s), dependencies first",
        "  1. a 1.0.0 -> 2.0.0",
        "  2. b 1.0.0 (restart)",
    ]
    assert report.timings and not re.search(r"\d\.\d+ ?m?s\b", str(report))  # timed, not shown


def test_a_rolled_back_reload_says_who_failed_where_and_that_the_old_versions_serve(
    kernel, make_plugin
):
    def broken(self, ctx):
        raise RuntimeError("bad config")

    kernel.register(make_plugin("a"))
    kernel.load_all()
    with pytest.raises(hx.ReloadError) as failed:
        kernel.reload(make_plugin("a", version="2.0.0", start=broken))
    report = failed.value.report
    assert not report.ok and report.rolled_back
    lines = str(report).splitlines()
    assert lines[0] == "reload of a rolled back: a failed in start"
    assert "bad config" in lines[1] and lines[1].startswith("  error: ")
    assert lines[-1] == "  the old versions keep serving"


def test_a_reload_report_of_nothing_says_the_running_versions_stay():
    assert str(hx.ReloadReport()) == "no changes: the running versions stay"
    changed = hx.ReloadReport(changes={"x": ["TokenBucket"], "y": ["TokenBucket"], "z": []})
    assert changed.change_lines() == ["TokenBucket changed: reloading x, y"]


def test_plugin_rows_and_health_read_the_same_on_every_run(kernel, make_plugin):
    kernel.register(make_plugin("a", description="the store"))
    kernel.register(make_plugin("b", deps=("a",)))
    kernel.load_all()
    kernel.health()
    rows = [str(row) for row in kernel.info()]
    assert rows == [
        "a 1.0.0 (plugin) active, health healthy, reloads 0",
        "b 1.0.0 (plugin) active, health healthy, reloads 0 <- a",
    ]
    status = kernel.health()["a"]
    assert status and str(status) == "a: healthy" and repr(status) == "a: healthy"
    shown = [*rows, str(kernel.load_all()), str(status), *map(repr, kernel.info())]
    assert not any(MEMORY_ADDRESS.search(text) for text in shown)


def test_health_results_compare_without_their_timing():
    fast = hx.HealthStatus("a", True, elapsed=0.001)
    assert fast == hx.HealthStatus("a", True, elapsed=1.5)
    assert not hx.HealthStatus("a", False, "down") and str(hx.HealthStatus("a", False, "down")) == (
        "a: unhealthy (down)"
    )


def test_reports_show_as_their_text_in_ipython():
    pretty = pytest.importorskip("IPython.lib.pretty")
    report = hx.LoadReport(order=["a"])
    assert pretty.pretty(report) == "loaded 1: a"
