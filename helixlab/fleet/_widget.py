"""``%helix fleet``: the fleet table and a live chart of requests/s and errors per worker.

A :class:`FleetView` polls the fleet's Redis (every worker's heartbeat carries its request
and error totals) from a thread and only changes widget values, never prints: in a
notebook under nbval nothing lands in the running cell, and its ``text/plain`` is a
stable one-liner. Each committed generation is marked on the chart, so a fleet reload
shows as a line across every worker's traffic.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from typing import Any

from .._extras import needs
from ._redis import Keys, run_sync

with needs("lab", "the fleet's live view"):
    import ipywidgets as w

__all__ = ["FleetView", "chart_svg", "table_html"]

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT, PAD = 640, 180, 30


def chart_svg(
    series: dict[str, list[tuple[float, float, float]]],
    marks: list[tuple[float, int]],
    now: float,
    window: float,
) -> str:
    """An SVG line chart: per worker requests/s (solid) and errors/s (dashed) over the last
    ``window`` seconds, with each generation's commit (``marks``) as a labelled line."""
    start = now - window
    peak = max([1.0, *(max(r, e) for points in series.values() for _, r, e in points)])

    def x(t: float) -> float:
        return PAD + (t - start) / window * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD - v / peak * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" '
        f'fill="none" stroke="#ccc"/>',
        f'<text x="{PAD}" y="{PAD - 8}">requests/s per worker (dashed: errors/s), '
        f"last {window:g}s, peak {peak:.0f}</text>",
    ]
    for t, gen in marks:
        if t >= start:
            parts.append(
                f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{PAD}" y2="{HEIGHT - PAD}" '
                f'stroke="#d62728" stroke-dasharray="4 3"/>'
                f'<text x="{x(t) + 3:.1f}" y="{PAD + 12}" fill="#d62728">g{gen}</text>'
            )
    for i, (worker, points) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        shown = [p for p in points if p[0] >= start]
        if len(shown) > 1:
            for index, dash in ((1, ""), (2, ' stroke-dasharray="2 2"')):
                line = " ".join(f"{x(p[0]):.1f},{y(p[index]):.1f}" for p in shown)
                parts.append(
                    f'<polyline points="{line}" fill="none" stroke="{color}" '
                    f'stroke-width="1.5"{dash}/>'
                )
        parts.append(
            f'<text x="{PAD + i * 150}" y="{HEIGHT - 8}" fill="{color}">'
            f"{html.escape(worker)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


#: A worker's id, host and numbers stay on one line (a narrow cell wrapped the id mid-name);
#: only the last error may wrap.
_STYLE = (
    "<style>.helix-fleet th, .helix-fleet td { white-space: nowrap; padding: 0 8px; }"
    " .helix-fleet td:last-child { white-space: normal; }</style>"
)


def table_html(status: dict[str, Any], rates: dict[str, tuple[float, float]]) -> str:
    """The fleet table: one row per worker, as ``helixlab fleet status`` shows it."""
    head = (
        f"<b>fleet {html.escape(repr(status['fleet']))}</b>: generation "
        f"{status['generation']} ({status['digest']}), {len(status['workers'])} worker(s)"
    )
    columns = ("worker", "host", "pid", "generation", "state", "req/s", "errors", "last error")
    rows = []
    for worker in status["workers"]:
        rps, _ = rates.get(worker["id"], (0.0, 0.0))
        cells = (
            worker["id"],
            worker["host"],
            worker["pid"],
            worker["generation"],
            worker["state"],
            f"{rps:.1f}",
            worker.get("errors") or 0,
            worker.get("last_error") or "-",
        )
        rows.append("".join(f"<td>{html.escape(str(c))}</td>" for c in cells))
    header = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(f"<tr>{row}</tr>" for row in rows)
    return f'<div>{head}</div>{_STYLE}<table class="helix-fleet"><tr>{header}</tr>{body}</table>'


class FleetView(w.VBox):
    """A live view of one fleet: its table and chart, refreshed every ``interval`` seconds."""

    def __init__(
        self, redis: str, fleet: str = "helixlab", *, window: float = 30.0, interval: float = 0.5
    ):
        self.table = w.HTML()
        self.chart = w.HTML()
        super().__init__([self.table, self.chart])
        self.redis_url, self._keys = redis, Keys(fleet)  # `keys` is a widget trait
        self.window, self.interval = window, interval
        self.series: dict[str, deque] = {}
        self.marks: list[tuple[float, int]] = []
        self._last: dict[str, tuple[float, int, int]] = {}
        self._generation: int | None = None
        self._stop = threading.Event()
        self.refresh()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # Redis gone: say so in the view, keep trying
                self.table.value = f"<div>fleet unreachable: {html.escape(str(exc))}</div>"

    def status(self) -> dict[str, Any]:
        from ._cli import read_status

        return run_sync(lambda: read_status(self.redis_url, self._keys))

    def refresh(self) -> None:
        """Read the fleet once and redraw (the thread does this every ``interval``)."""
        status = self.status()
        now = time.time()
        if status["generation"] != self._generation:
            if self._generation is not None:
                self.marks.append((now, status["generation"]))
            self._generation = status["generation"]
        rates = {}
        for worker in status["workers"]:
            wid, at = worker["id"], worker.get("at") or now
            requests, errors = worker.get("requests") or 0, worker.get("errors") or 0
            last = self._last.get(wid)
            if last is not None and at > last[0]:
                dt = at - last[0]
                rate = ((requests - last[1]) / dt, (errors - last[2]) / dt)
                self.series.setdefault(wid, deque(maxlen=600)).append((at, *rate))
            if last is None or at > last[0]:
                self._last[wid] = (at, requests, errors)
            points = self.series.get(wid)
            rates[wid] = points[-1][1:] if points else (0.0, 0.0)
        self.table.value = table_html(status, rates)
        series = {k: list(v) for k, v in self.series.items()}
        self.chart.value = chart_svg(series, self.marks, now, self.window)

    def close(self) -> None:
        self._stop.set()
        super().close()

    def __repr__(self) -> str:
        return f"FleetView(fleet {self._keys.fleet!r})"
