"""Live widgets: the dashboard, the dependency-graph view and the event log.

They update after kernel events. An event only pokes a widget; the redrawing happens on
a worker thread, once per burst of events, so an open dashboard does not slow the
kernel's own thread (a reload emits several events per plugin). They only change
widget values (sent over comms), never print and never clear outputs, so nothing lands
in whatever cell happens to be running and nbval has nothing to trip on. Each widget's
``repr`` is a stable one-line summary, since that is the ``text/plain`` nbval compares.
"""

from __future__ import annotations

import contextlib
import html
import threading
from collections.abc import Callable
from typing import Any

from .._extras import needs
from ..errors import HelixError
from ..kernel import Kernel, PluginEvent
from ._displays import INSTALL_HINT, GraphView, state_badge, table_html
from ._drawing import to_dot, to_text
from ._quiet import muffled_threads

with needs("lab", "helixlab.widgets"):
    import ipywidgets as w

__all__ = ["Dashboard", "EventLogView", "GraphWidget"]

#: Events after which the dashboard runs the health checks again (in the background).
_RECHECK = frozenset({"started", "reloaded", "rolled_back", "configured", "failed"})

_COLUMNS = ("plugin", "kind", "version", "state", "health", "depends on", "reloads", "", "", "")


class _Row:
    """The widgets of one plugin's row."""

    def __init__(self, name: str, act: Callable[[str, str], None]):
        self.name = name
        self.cells = {key: w.HTML() for key in _COLUMNS[:7]}
        for key, cell in self.cells.items():
            cell.add_class(f"helix-{key.replace(' ', '-')}")
            cell.add_class(f"helix-row-{name}")
        self.buttons = {}
        for action, icon in (("reload", "refresh"), ("stop", "stop"), ("start", "play")):
            button = w.Button(description=action, icon=icon, layout=w.Layout(width="auto"))
            button.add_class(f"helix-{action}-{name}")
            button.on_click(lambda _b, action=action: act(action, name))
            self.buttons[action] = button

    @property
    def widgets(self) -> list[w.Widget]:
        return [*self.cells.values(), *self.buttons.values()]

    def update(self, info: Any, health: str | None = None) -> None:
        values = {
            "plugin": f"<b>{html.escape(info.name)}</b>",
            "kind": info.kind,
            "version": info.version,
            "state": state_badge(info.state).html,
            "health": health or info.health,
            "depends on": html.escape(", ".join(info.dependencies)) or "-",
            "reloads": str(info.reload_count),
        }
        for key, value in values.items():
            if self.cells[key].value != value:
                self.cells[key].value = value
        active = info.state == "active"
        self.buttons["reload"].disabled = not active
        self.buttons["stop"].disabled = not active
        self.buttons["start"].disabled = active or not info.enabled


class _Coalescer:
    """Runs ``render`` on a worker thread after events, once per burst of events.

    Rendering a graph takes a subprocess; doing it on the kernel's thread for every event
    of a cascade would slow the reload itself.
    """

    def __init__(self, render: Callable[[], None]):
        self._render = render
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        self._worker: threading.Thread | None = None
        self.idle = threading.Event()
        self.idle.set()

    def poke(self) -> None:
        with self._lock:
            self._dirty = True
            self.idle.clear()
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, daemon=True)
                self._worker.start()

    def close(self) -> None:
        """Run nothing more (a run in progress finishes)."""
        with self._lock:
            self._closed = True

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._dirty or self._closed:
                    self._worker = None
                    self.idle.set()
                    return
                self._dirty = False
            with contextlib.suppress(Exception):  # a drawing failure must not kill the worker
                self._render()


class GraphWidget(w.HTML):
    """The dependency graph as SVG (text without graphviz), redrawn after kernel events."""

    value: str  # the HTML widget's trait (an annotation only: the trait stays ipywidgets')

    def __init__(self, kernel: Kernel, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_class("helix-graph")
        self._kernel = kernel
        self._coalescer = _Coalescer(self.refresh)
        self._unsubscribe = kernel.subscribe(lambda _event: self._coalescer.poke())
        self.refresh()

    def view(self) -> GraphView:
        kernel = self._kernel
        states = {row.name: row.state for row in kernel.info()}
        graph = kernel.graph
        return GraphView(
            to_dot(graph, states=states, highlight=kernel.last_cascade),
            to_text(graph, states=states, highlight=kernel.last_cascade),
        )

    def refresh(self) -> None:
        view = self.view()
        svg = view.svg()
        if svg is None:
            value = f"<pre>{html.escape(view.text)}\n{html.escape(INSTALL_HINT)}</pre>"
        else:
            value = svg[svg.find("<svg") :]
        if self.value != value:
            self.value = value

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until redrawing has caught up with the events so far."""
        return self._coalescer.idle.wait(timeout)

    def close(self) -> None:
        self._unsubscribe()
        self._coalescer.close()
        super().close()

    def __repr__(self) -> str:
        return "GraphWidget(dependency graph, live)"


class EventLogView(w.VBox):
    """Kernel events, newest first, filterable by plugin, at most ``limit`` rows."""

    def __init__(self, kernel: Kernel, limit: int = 12, **kwargs: Any):
        self._kernel = kernel
        self.limit = limit
        self.filter = w.Dropdown(description="plugin", options=["all"], value="all")
        self.table = w.HTML()
        self.table.add_class("helix-events")
        super().__init__([self.filter, self.table], **kwargs)
        self._lock = threading.Lock()
        self.filter.observe(lambda _change: self.refresh(), names="value")
        self._coalescer = _Coalescer(self.refresh)
        self._unsubscribe = kernel.subscribe(lambda _event: self._coalescer.poke())
        self.refresh()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until the table has caught up with the events so far."""
        return self._coalescer.idle.wait(timeout)

    def rows(self) -> list[PluginEvent]:
        plugin = None if self.filter.value == "all" else self.filter.value
        return list(reversed(self._kernel.events(plugin=plugin, limit=self.limit)))

    def refresh(self) -> None:
        with self._lock:
            names = ["all", *sorted(self._kernel.names)]
            if list(self.filter.options) != names:
                current = self.filter.value
                self.filter.options = names
                self.filter.value = current if current in names else "all"
            rows = [
                (e.seq, e.kind, e.plugin, e.version, e.detail, e.error or "") for e in self.rows()
            ]
            self.table.value = table_html(
                ("#", "event", "plugin", "version", "detail", "error"), rows
            )

    def close(self) -> None:
        self._unsubscribe()
        super().close()

    def __repr__(self) -> str:
        return f"EventLogView(newest first, at most {self.limit})"


class Dashboard(w.VBox):
    """One row per plugin (kind, version, state, health, dependencies, reloads) with
    reload / stop / start buttons, the graph and the event log; all live.
    """

    def __init__(self, kernel: Kernel, *, graph: bool = True, events: bool = True, **kwargs):
        self.kernel = kernel
        self._rows: dict[str, _Row] = {}
        self._lock = threading.RLock()
        self._closed = False
        self.heading = w.HTML()
        self.grid = w.GridBox(
            layout=w.Layout(
                grid_template_columns=f"repeat({len(_COLUMNS)}, auto)", grid_gap="2px 8px"
            )
        )
        self.grid.add_class("helix-dashboard-grid")
        self.status = w.HTML()
        self.status.add_class("helix-status")
        self.graph = GraphWidget(kernel) if graph else None
        self.events_view = EventLogView(kernel) if events else None
        self.health_button = w.Button(description="check health", icon="heartbeat")
        self.health_button.add_class("helix-check-health")
        self.health_button.on_click(lambda _b: self.act("health", ""))
        top = w.HBox([self.heading, self.health_button], layout=w.Layout(align_items="center"))
        parts = [top, self.grid, self.status, self.graph, self.events_view]
        super().__init__([p for p in parts if p is not None], **kwargs)
        self.add_class("helix-dashboard")
        self._health: dict[str, str] = {}  # the background checks' column, by plugin
        self._coalescer = _Coalescer(self.refresh)
        self._checker = _Coalescer(self._check_health)
        self._unsubscribe = kernel.subscribe(self._on_event)
        self.refresh()
        self._checker.poke()  # health at open, without the learner pressing the button

    def _on_event(self, event: PluginEvent) -> None:
        if event.kind in _RECHECK:
            self._checker.poke()
        self._coalescer.poke()

    def _check_health(self) -> None:
        """Run the health checks on a worker thread; results stay in this dashboard.

        ``look_health``: a look from the dashboard must not add events or change what
        ``%helix list`` prints in the notebook's other cells.
        """
        try:
            with muffled_threads():  # a health_check that prints must not print elsewhere
                statuses = self.kernel.look_health()
        except HelixError:
            return
        self._health = {
            name: "healthy" if status.healthy else "unhealthy" for name, status in statuses.items()
        }
        self.refresh()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every part of the dashboard has caught up with the events so far."""
        parts = [
            self._checker.idle.wait,
            self._coalescer.idle.wait,
            *(p.wait_idle for p in (self.graph, self.events_view) if p),
        ]
        return all(wait(timeout) for wait in parts)

    def row(self, name: str) -> _Row:
        return self._rows[name]

    def act(self, action: str, name: str) -> None:
        """What a button does; the outcome (or the error) shows in the status line."""
        kernel = self.kernel
        try:
            if action == "reload":
                result = kernel.reload(name)
                message = f"reloaded {name}: {len(result.order)} plugin(s)"
            elif action == "stop":
                order = kernel.unload(name)
                message = f"stopped {', '.join(order)}"
            elif action == "health":
                statuses = kernel.health()
                failing = [s.plugin for s in statuses.values() if not s.healthy]
                message = f"health: {len(statuses) - len(failing)} healthy" + (
                    f", unhealthy: {', '.join(failing)}" if failing else ""
                )
            else:
                kernel.load(name)
                message = f"started {name}"
            self.status.value = f"<span>{html.escape(message)}</span>"
        except HelixError as exc:
            self.status.value = f'<span style="color:#b00020">{html.escape(str(exc))}</span>'
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            if self._closed:  # a health look that was under way when the dashboard closed
                return
            infos = self.kernel.info()
            names = [i.name for i in infos]
            if names != list(self._rows):
                rows = {n: self._rows.get(n) or _Row(n, self.act) for n in names}
                self._rows = rows
                header = []
                for title in _COLUMNS:
                    cell = w.HTML(f"<b>{title}</b>")
                    header.append(cell)
                self.grid.children = header + [x for r in rows.values() for x in r.widgets]
            for info in infos:
                # the kernel's own column once a recorded run has seen this instance
                mine = self._health.get(info.name) if info.health == "unknown" else None
                self._rows[info.name].update(info, mine)
            active = sum(1 for i in infos if i.state == "active")
            self.heading.value = f"<b>helixlab</b>: {active} of {len(infos)} plugins active"

    def close(self) -> None:
        """Stop listening; nothing changes it afterwards, not even a run under way."""
        with self._lock:
            self._closed = True
        self._unsubscribe()
        self._coalescer.close()
        self._checker.close()
        for part in (self.graph, self.events_view):
            if part is not None:
                part.close()
        super().close()

    def __repr__(self) -> str:
        return "Dashboard(helixlab plugins, live)"
