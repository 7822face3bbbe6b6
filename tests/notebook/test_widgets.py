"""The live widgets without a browser: Dashboard, GraphWidget and EventLogView."""

from __future__ import annotations

import shutil
import threading

import pytest
from IPython.utils.capture import capture_output

import helixlab as hx
from helixlab.notebook import _displays
from helixlab.widgets import Dashboard, EventLogView, GraphWidget


@pytest.fixture
def pair(kernel, make_plugin):
    kernel.register(make_plugin("store", version="1.0"))
    kernel.register(make_plugin("api", deps=("store",), version="1.0"))
    kernel.load_all()
    return kernel


@pytest.fixture
def dashboard(pair):
    board = Dashboard(pair)
    yield board
    board.close()


def cells(board: Dashboard, name: str) -> dict[str, str]:
    assert board.wait_idle()  # the dashboard redraws on a worker thread after events
    return {key: cell.value for key, cell in board.row(name).cells.items()}


def test_one_row_per_plugin_with_what_a_user_needs(dashboard):
    assert list(dashboard._rows) == ["store", "api"]
    api = cells(dashboard, "api")
    assert api["plugin"] == "<b>api</b>"
    assert (api["kind"], api["version"], api["depends on"], api["reloads"]) == (
        "plugin",
        "1.0",
        "store",
        "0",
    )
    assert ">active<" in api["state"] and api["health"] == "healthy"  # checked at open
    assert "2 of 2 plugins active" in dashboard.heading.value
    assert repr(dashboard) == "Dashboard(helixlab plugins, live)"


def test_cells_and_buttons_carry_the_css_classes_the_browser_test_selects(dashboard):
    row = dashboard.row("api")
    assert set(row.cells["reloads"]._dom_classes) == {"helix-reloads", "helix-row-api"}
    assert "helix-reload-api" in row.buttons["reload"]._dom_classes
    assert "helix-dashboard" in dashboard._dom_classes
    assert "helix-graph" in dashboard.graph._dom_classes


def test_rows_follow_kernel_events(pair, dashboard, make_plugin):
    pair.register(make_plugin("cache", deps=("store",)))
    assert dashboard.wait_idle()
    assert list(dashboard._rows) == ["store", "api", "cache"]
    assert ">registered<" in cells(dashboard, "cache")["state"]
    assert not dashboard.row("cache").buttons["start"].disabled
    pair.load("cache")
    assert ">active<" in cells(dashboard, "cache")["state"]


def test_health_is_checked_at_open_and_after_each_reload_without_touching_the_kernel_log(
    kernel, make_plugin
):
    import helixlab as hx

    sick = {"now": False}

    class Flaky(hx.Plugin):
        name = "flaky"

        def health_check(self, ctx):
            return "disk full" if sick["now"] else None

    kernel.register(Flaky)
    kernel.load_all()
    board = Dashboard(kernel, graph=False, events=False)
    try:
        assert cells(board, "flaky")["health"] == "healthy"  # nobody pressed the button
        sick["now"] = True
        kernel.reload("flaky")
        assert cells(board, "flaky")["health"] == "unhealthy"
        # the dashboard's look is its own: no health events, `%helix list` unchanged
        assert not [e for e in kernel.events() if e.kind == "health_changed"]
        assert kernel.info()[0].health == "unknown"
    finally:
        board.close()


def test_the_dashboards_event_log_is_bounded_newest_first(pair, dashboard):
    for _ in range(5):  # dozens of events
        pair.reload("store")
    assert dashboard.wait_idle()
    assert len(pair.events()) > 20
    rows = dashboard.events_view.rows()
    assert len(rows) == 12 and rows[0].seq == pair.events()[-1].seq
    assert dashboard.events_view.table.value.count("<tr>") == 13  # the header and 12 rows


def test_health_column_follows_a_health_run(pair, dashboard):
    pair.health()
    assert cells(dashboard, "api")["health"] == "healthy"


def test_reload_button_reloads_the_plugin_and_its_row_counts_it(pair, dashboard):
    old = pair.get("store")
    dashboard.row("store").buttons["reload"].click()
    assert pair.get("store") is not old
    assert cells(dashboard, "store")["reloads"] == "1"
    assert cells(dashboard, "api")["reloads"] == "1"  # the cascade
    assert "reloaded store: 2 plugin(s)" in dashboard.status.value


def test_stop_and_start_buttons(pair, dashboard):
    store = dashboard.row("store")
    store.buttons["stop"].click()
    assert pair.state("api") == hx.PluginState.STOPPED
    assert ">stopped<" in cells(dashboard, "api")["state"]
    assert store.buttons["reload"].disabled and not store.buttons["start"].disabled
    assert "stopped api, store" in dashboard.status.value
    dashboard.row("api").buttons["start"].click()
    assert pair.state("store") == hx.PluginState.ACTIVE
    assert "2 of 2 plugins active" in dashboard.heading.value


def test_a_failed_reload_from_a_button_shows_in_the_status_line(pair, dashboard):
    def broken(self, ctx):
        raise RuntimeError("no network")

    type(pair.get("api")).start = broken
    dashboard.row("api").buttons["reload"].click()  # no exception escapes the click
    assert "rolled back" in dashboard.status.value and "no network" in dashboard.status.value
    assert cells(dashboard, "api")["reloads"] == "0"
    assert pair.state("api") == hx.PluginState.ACTIVE


def test_updates_arrive_from_a_background_thread_without_printing(pair, dashboard):
    changed_on: list[str] = []
    reloads = dashboard.row("api").cells["reloads"]
    reloads.observe(lambda _c: changed_on.append(threading.current_thread().name), "value")
    with capture_output() as printed:
        worker = threading.Thread(target=pair.reload, args=("api",), name="worker")
        worker.start()
        worker.join(timeout=10)
        assert dashboard.wait_idle()
    assert reloads.value == "1"
    assert changed_on and threading.main_thread().name not in changed_on
    assert printed.stdout == "" and printed.stderr == "" and printed.outputs == []


# -- the graph view ---------------------------------------------------------------------


def test_graph_is_svg_coloured_by_state_with_the_last_cascade_highlighted(pair):
    graph = GraphWidget(pair)
    try:
        assert graph.value.startswith("<svg")
        assert "#c8f7c5" in graph.value  # active
        pair.unload("api")
        assert graph.wait_idle()
        assert "#d9d9d9" in graph.value  # stopped
        pair.load("api")
        pair.reload("store")
        assert graph.wait_idle()
        assert "#1f6feb" in graph.value  # the cascade store -> api
        assert graph.value.count("<title>store&#45;&gt;api</title>") == 1  # one edge
        assert repr(graph) == "GraphWidget(dependency graph, live)"
    finally:
        graph.close()


def test_graph_falls_back_to_text_with_an_install_hint_without_dot(pair, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name, *a, **k: None)
    graph = GraphWidget(pair)
    try:
        assert graph.value.startswith("<pre>")
        assert "store" in graph.value and "apt-get install graphviz" in graph.value
    finally:
        graph.close()


def test_graph_view_without_dot_on_path_says_how_to_install(pair, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not _displays.dot_available()
    view = GraphWidget(pair).view()
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/plain"}
    lines = bundle["text/plain"].splitlines()
    assert lines[-1] == _displays.INSTALL_HINT
    assert "conda install graphviz" in lines[-1]


# -- the event log ------------------------------------------------------------------------


def test_event_log_is_newest_first_filterable_and_bounded(pair):
    log = EventLogView(pair, limit=5)
    try:
        pair.reload("api")
        assert log.wait_idle()
        rows = log.rows()
        assert len(rows) == 5
        assert [e.seq for e in rows] == sorted((e.seq for e in rows), reverse=True)
        assert rows[0].kind == "reloaded" and rows[0].plugin == "api"
        assert log.table.value.index(">reloaded<") < log.table.value.index(">reloading<")
        assert list(log.filter.options) == ["all", "api", "store"]
        log.filter.value = "store"
        assert {e.plugin for e in log.rows()} == {"store"}
        assert ">api<" not in log.table.value
        assert repr(log) == "EventLogView(newest first, at most 5)"
    finally:
        log.close()


def test_closed_widgets_stop_listening(pair):
    board = Dashboard(pair)
    board.close()
    before = board.heading.value
    pair.unload("store")
    assert board.heading.value == before


def test_a_health_look_under_way_when_the_dashboard_closes_changes_nothing():
    released = threading.Event()
    looking = threading.Event()

    class Slow(hx.Plugin):
        name = "slow"

        def health_check(self, ctx):
            looking.set()
            released.wait(10)
            return "disk full"

    with hx.Kernel() as kernel:
        kernel.register(Slow)
        kernel.load_all()
        board = Dashboard(kernel, graph=False, events=False)  # opening looks at health
        assert looking.wait(10)
        board.close()
        before = (board.heading.value, board.row("slow").cells["health"].value)
        kernel.unload("slow")
        released.set()
        assert board.wait_idle()
        assert (board.heading.value, board.row("slow").cells["health"].value) == before


def test_the_check_health_button_fills_the_health_column():
    import helixlab as hx
    from helixlab.widgets import Dashboard

    class Fine(hx.Plugin):
        name = "fine"

    class Sick(hx.Plugin):
        name = "sick"

        def health_check(self, ctx):
            return "disk full"

    with hx.Kernel() as kernel:
        kernel.register(Fine)
        kernel.register(Sick)
        kernel.load_all()
        board = Dashboard(kernel, graph=False, events=False)
        board.health_button.click()
        assert board.row("fine").cells["health"].value == "healthy"
        assert board.row("sick").cells["health"].value == "unhealthy"
        assert "health: 1 healthy, unhealthy: sick" in board.status.value
        board.close()
