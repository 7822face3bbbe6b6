"""HTML reprs of the kernel's own objects (reports, rows, events, errors, the kernel).

They are registered for the kernel's classes in ``helixlab._reprs`` when this module is
imported (``import helixlab`` does), as IPython's ``for_type`` would: the kernel does not
import the notebook layer.
"""

from __future__ import annotations

import html
from typing import Any

from ._displays import state_badge, table_html

__all__ = ["error_html", "kernel_html", "reload_html"]


def _heading(report: Any, skip: int = 0) -> str:
    """The line above the table: what the whole table is about (all of the plugins loaded);
    ``skip`` passes over the report's "X changed" lines, shown above it."""
    if report.error is None and not report.order and len(report.loaded) > 1:
        return f"loaded {len(report.loaded)} new plugins: {', '.join(report.loaded)}"
    return str(report).splitlines()[skip]


def reload_html(report: Any) -> str:
    rows: list[tuple[int | str, str, str, str]] = []
    for i, name in enumerate(report.order, 1):
        old, new = report.versions.get(name, ("", ""))
        version = old if old == new else f"{old} → {new}"
        role = "target" if name in report.targets else "dependent"
        if report.strategy.get(name) == "restart":
            role += " (restart)"
        rows.append((i, name, version, role))
    for name in report.loaded:
        rows.append(("+", name, report.versions.get(name, ("", ""))[1], "loaded"))
    changes = report.change_lines() if report.ok else []  # "TokenBucket changed: ..."
    first = "<br>".join(html.escape(line) for line in [*changes, _heading(report, len(changes))])
    color = "#c8f7c5" if report.ok else "#fa8072"
    head = f'<div style="border-left:4px solid {color};padding-left:6px"><b>{first}</b>'
    if report.error:
        head += f"<br>error: {html.escape(report.error)}"
    if not rows:  # "no changes": a table header over nothing says less than the sentence
        return head + "</div>"
    return head + table_html(("#", "plugin", "version", "role"), rows) + "</div>"


def load_html(report: Any) -> str:
    rows = [(name, state_badge("active"), "") for name in report.order]
    rows += [
        (n, state_badge("failed"), f"{e.phase}: {report.reasons.get(n) or e}")
        for n, e in report.failed.items()
    ]
    rows += [(n, state_badge("registered"), why) for n, why in report.skipped.items()]
    return table_html(("plugin", "state", "detail"), rows)


def info_html(info: Any) -> str:
    return table_html(
        ("plugin", "kind", "version", "state", "depends on", "reloads"),
        [
            (
                info.name,
                info.kind,
                info.version,
                state_badge(info.state),
                ", ".join(info.dependencies) or "-",
                info.reload_count,
            )
        ],
    )


def event_html(event: Any) -> str:
    return table_html(
        ("#", "event", "plugin", "version", "detail", "error"),
        [(event.seq, event.kind, event.plugin, event.version, event.detail, event.error or "")],
    )


def health_html(status: Any) -> str:
    badge = state_badge("active" if status.healthy else "failed")
    return table_html(("plugin", "health", "detail"), [(status.plugin, badge, status.detail)])


def kernel_html(kernel: Any) -> str:
    from ._displays import PluginTable

    return f"<b>{html.escape(repr(kernel))}</b>" + PluginTable(kernel.info())._html()


def error_html(error: BaseException) -> str:
    return (
        '<div style="border-left:4px solid #fa8072;padding-left:6px">'
        f"<b>{html.escape(type(error).__name__)}</b>: {html.escape(str(error))}</div>"
    )


def _register() -> None:
    from .._reprs import register_html
    from ..errors import HelixError
    from ..kernel import HealthStatus, Kernel, LoadReport, PluginEvent, PluginInfo, ReloadReport

    for cls, render in (
        (ReloadReport, reload_html),
        (LoadReport, load_html),
        (PluginInfo, info_html),
        (PluginEvent, event_html),
        (HealthStatus, health_html),
        (Kernel, kernel_html),
        (HelixError, error_html),
    ):
        register_html(cls, render)


_register()
