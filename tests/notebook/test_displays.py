"""Deterministic ``text/plain`` for everything a notebook shows (what nbval compares)."""

from __future__ import annotations

import re

import pytest
from IPython.core.formatters import DisplayFormatter

import helixlab as hx
from helixlab.notebook._displays import EventTable, HealthTable, PluginTable

FORMAT = DisplayFormatter()

#: What must never reach a compared output: addresses, temp paths, timings.
UNSTABLE = re.compile(r"0x[0-9a-f]{4,}|/tmp/|\d+\.\d+\s*(s|ms)\b|\bat 0x")


def plain(obj: object) -> str:
    return FORMAT.format(obj)[0]["text/plain"]


def session(make_plugin) -> list[str]:
    """A short session: load, reload, a failed reload, health; every display as text."""
    kernel = hx.Kernel()
    try:
        kernel.register(make_plugin("store", version="1.0"))
        kernel.register(make_plugin("api", deps=("store",), version="1.0"))
        shown = [plain(kernel.load_all()), plain(kernel.reload("store"))]

        def broken(self, ctx):
            raise RuntimeError("boom")

        kernel.register(make_plugin("bad", deps=("api",), start=broken))
        load = kernel.load_all()
        shown.append(plain(load))
        shown.append(plain(kernel.info()[0]))
        shown += [plain(status) for status in kernel.health().values()]
        shown += [plain(event) for event in kernel.events()]
        shown.append(plain(kernel))
        shown.append(plain(PluginTable(kernel.info())))
        shown.append(plain(HealthTable(kernel.health())))
        shown.append(plain(EventTable(kernel.events(limit=3))))
        with pytest.raises(hx.ReloadError) as failed:
            kernel.reload("bad")
        shown.append(repr(failed.value))
        with pytest.raises(hx.HelixError) as unknown:
            kernel.get("nosuch")
        shown.append(repr(unknown.value))
        return shown
    finally:
        kernel.close()


def test_two_runs_of_the_same_session_show_exactly_the_same_text(make_plugin):
    first, second = session(make_plugin), session(make_plugin)
    assert first == second
    for text in first:
        assert not UNSTABLE.search(text), text


def test_reload_report_text(make_plugin, kernel):
    kernel.register(make_plugin("store", version="1.0"))
    kernel.register(make_plugin("api", deps=("store",), version="1.0"))
    kernel.load_all()
    report = kernel.reload(make_plugin("store", version="2.0"))
    assert plain(report) == (
        "reloaded store: 2 plugin(s), dependencies first\n  1. store 1.0 -> 2.0\n  2. api 1.0"
    )
    assert report.timings  # measured, but never shown
    assert plain(kernel.info()[1]) == "api 1.0 (plugin) active, health unknown, reloads 1 <- store"


def test_rolled_back_report_says_why_and_that_the_old_versions_serve(make_plugin, kernel):
    kernel.register(make_plugin("store", version="1.0"))
    kernel.load_all()

    def broken(self, ctx):
        raise RuntimeError("boom")

    with pytest.raises(hx.ReloadError) as failed:
        kernel.reload(make_plugin("store", version="1.1", start=broken))
    assert plain(failed.value.report) == (
        "reload of store rolled back: store failed in start\n"
        "  error: RuntimeError: boom\n"
        "  1. store 1.0 -> 1.1\n"
        "  the old versions keep serving"
    )


def test_events_and_health_text(make_plugin, kernel):
    kernel.register(make_plugin("store", version="1.0"))
    kernel.load_all()
    assert [plain(e) for e in kernel.events()] == [
        "#1 registered    store 1.0: plugin from code",
        "#2 initialized   store 1.0",
        "#3 started       store 1.0",
    ]
    assert repr(kernel.events()[0]) == "PluginEvent(#1 registered    store 1.0: plugin from code)"
    assert plain(kernel.health()["store"]) == "store: healthy"
    assert plain(HealthTable({})) == "no plugins running"
    assert plain(EventTable([])) == "no events"


def test_errors_read_as_one_plain_sentence():
    cycle = hx.CycleError(["a", "b", "a"])
    assert repr(cycle) == "CycleError('Dependency cycle detected: a -> b -> a.')"
    missing = hx.PluginNotFoundError("x", ["b", "a"])
    assert str(missing) == "No plugin named 'x' is registered. Known plugins: a, b."


def test_tables_have_html_for_people_and_the_same_rows(make_plugin, kernel):
    kernel.register(make_plugin("store", version="1.0"))
    kernel.load_all()
    data, _ = FORMAT.format(PluginTable(kernel.info()))
    assert data["text/html"].startswith('<table class="helixlab"')
    assert ">store<" in data["text/html"] and ">active<" in data["text/html"]
    assert "store" in data["text/plain"]


def test_kernel_objects_have_html_for_people_and_the_same_html_every_run():
    """Reports, rows, events, health, errors and the kernel render as HTML, deterministically."""
    import helixlab as hx

    def session() -> list[str]:
        class Store(hx.Plugin):
            name = "store"

        class Api(hx.Plugin):
            name = "api"
            dependencies = ("store",)

        with hx.Kernel() as kernel:
            kernel.register(Store)
            kernel.register(Api)
            shown = [kernel.load_all(), kernel.reload("store"), *kernel.info()]
            shown += [*kernel.health().values(), *kernel.events()[-3:], kernel]
            shown.append(hx.ReloadError("store", "start", "Reload of store rolled back."))
            return [obj._repr_html_() for obj in shown]

    first, second = session(), session()
    assert first == second
    assert all(html.startswith(("<table", "<div", "<b>")) for html in first)
    assert "store" in first[1] and "dependent" in first[1]  # the cascade, with roles
