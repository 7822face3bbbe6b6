"""Rich displays: every one carries a deterministic ``text/plain`` (what nbval compares)
and an HTML table for people. No addresses, ids, temp paths or timings in either.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Iterable, Sequence
from typing import Any

from .._extras import needs
from ..errors import MissingExtraError
from ._drawing import STATE_COLORS

__all__ = ["EventTable", "GraphView", "HealthTable", "PluginTable", "Text", "table_html"]

_STYLE = "border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);font-size:12px"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"


def table_html(headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    head = "".join(f'<th style="{_CELL}">{html.escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{_cell(v)}</td>' for v in row) + "</tr>"
        for row in rows
    )
    cap = f"<caption style='text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="helixlab" style="{_STYLE}">{cap}<tr>{head}</tr>{body}</table>'


def _cell(value: Any) -> str:
    if isinstance(value, _Raw):
        return value.html
    return html.escape(str(value))


class _Raw:
    def __init__(self, html_text: str):
        self.html = html_text


def state_badge(state: str) -> _Raw:
    color = STATE_COLORS.get(state, "#ffffff")
    return _Raw(
        f'<span style="background:{color};padding:0 6px;border-radius:3px">'
        f"{html.escape(state)}</span>"
    )


def health_badge(healthy: bool) -> _Raw:
    """Health in the words every view uses: healthy or unhealthy (states are another column)."""
    color = STATE_COLORS["active" if healthy else "failed"]
    word = "healthy" if healthy else "unhealthy"
    return _Raw(f'<span style="background:{color};padding:0 6px;border-radius:3px">{word}</span>')


class _Display:
    """``text/plain`` from ``__str__``; ``text/html`` from ``_html``."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        return self._html()

    def _html(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


class Text(_Display):
    """A block of plain text that displays as itself (no quotes, no list brackets)."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


class PluginTable(_Display, list):
    """``%helix list``: one row per plugin."""

    HEADERS = ("plugin", "kind", "version", "state", "health", "depends on", "reloads")

    def _rows(self) -> list[tuple]:
        return [
            (
                i.name,
                i.kind,
                i.version,
                i.state,
                i.health,
                ", ".join(i.dependencies) or "-",
                i.reload_count,
            )
            for i in self
        ]

    def __str__(self) -> str:
        if not self:
            return "no plugins registered"
        return _text_table(self.HEADERS, self._rows())

    def _html(self) -> str:
        rows = [(*r[:3], state_badge(r[3]), *r[4:]) for r in self._rows()]
        return table_html(self.HEADERS, rows)


class HealthTable(_Display, dict):
    """``%helix health``: name → HealthStatus."""

    def __str__(self) -> str:
        if not self:
            return "no plugins running"
        return "\n".join(str(status) for status in self.values())

    def _html(self) -> str:
        rows = [(s.plugin, health_badge(s.healthy), s.detail or "") for s in self.values()]
        return table_html(("plugin", "health", "detail"), rows)


class EventTable(_Display, list):
    """``%helix events``: newest last, as they happened."""

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self) or "no events"

    def _html(self) -> str:
        rows = [(e.seq, e.kind, e.plugin, e.version, e.detail, e.error or "") for e in self]
        return table_html(("#", "event", "plugin", "version", "detail", "error"), rows)


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, headers)), *([str(v) for v in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def dot_available() -> bool:
    return shutil.which("dot") is not None


INSTALL_HINT = (
    "(graphviz's `dot` was not found, so the graph is shown as text: "
    "`apt-get install graphviz` or `conda install graphviz` draws it)"
)


class GraphView(_Display):
    """``%helix graph``: an SVG drawing (graphviz) with the text rendering as ``text/plain``.

    The SVG holds graphviz's version and font-dependent coordinates, so notebooks compare
    the text form; without the ``dot`` binary, only the text form is offered.
    """

    def __init__(self, dot: str, text: str, fmt: str = "svg"):
        self.dot, self.text, self.format = dot, text or "no plugins registered", fmt
        self._svg: str | None = None

    def svg(self) -> str | None:
        if self._svg is not None or not dot_available():
            return self._svg
        try:
            with needs("lab", "the graph view"):
                import graphviz
        except MissingExtraError:  # without the lab extra, the graph is shown as text
            return None

        try:
            self._svg = graphviz.Source(self.dot).pipe(format="svg", encoding="utf-8")
        except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
            return None
        return self._svg

    def _repr_html_(self) -> str | None:  # type: ignore[override]
        """None when there is a drawing: JupyterLab prefers HTML, and would show the text."""
        if self.format == "svg" and self.svg() is not None:
            return None
        return self._html()

    def __str__(self) -> str:
        if self.format == "dot":
            return self.dot
        if self.format == "svg" and not dot_available():
            return f"{self.text}\n{INSTALL_HINT}"
        return self.text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = {"text/plain": str(self)}
        if self.format == "svg":
            svg = self.svg()
            if svg is not None:
                bundle["image/svg+xml"] = svg
        return bundle
