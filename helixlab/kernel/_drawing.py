"""Drawing the dependency graph: DOT source for graphviz, and text for terminals.

Both are deterministic (sorted), so notebooks can compare them: nodes coloured by state,
the last reload cascade highlighted, missing or unsatisfied dependencies dashed in red.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._graph import DependencyGraph

__all__ = ["STATE_COLORS", "to_dot", "to_text"]

#: Fill colour of a node in ``to_dot`` by lifecycle state.
STATE_COLORS: Mapping[str, str] = MappingProxyType(
    {
        "registered": "#ffffff",
        "initialized": "#fff3b0",
        "active": "#c8f7c5",
        "stopping": "#ffd8a8",
        "stopped": "#d9d9d9",
        "failed": "#fa8072",
    }
)
_HIGHLIGHT = "#1f6feb"
_MISSING = "#d62728"


def to_dot(
    graph: DependencyGraph,
    *,
    states: Mapping[str, str] | None = None,
    highlight: Iterable[str] = (),
    title: str | None = None,
) -> str:
    """Graphviz DOT source; arrows run from a dependency to its dependents (start order)."""
    states = states or {}
    marked = set(highlight)
    lines = [
        "digraph helixlab {",
        '  graph [rankdir=LR, fontname="Helvetica"'
        + (f", label={_quote(title)}, labelloc=t" if title else "")
        + "];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fillcolor="#ffffff"];',
        '  edge [color="#555555"];',
    ]
    for name in sorted(graph.nodes):
        node = graph.nodes[name]
        state = states.get(name)
        attrs = [f"label={_label(name, node.version)}"]
        if state is not None:
            color = STATE_COLORS.get(str(state), "#ffffff")
            attrs += [f'fillcolor="{color}"', f"tooltip={_quote(str(state))}"]
        if not node.enabled:
            attrs += ['style="rounded,filled,dashed"', 'fontcolor="#777777"']
        if name in marked:
            attrs += [f'color="{_HIGHLIGHT}"', "penwidth=3"]
        lines.append(f"  {_quote(name)} [{', '.join(attrs)}];")
    missing = sorted({d for node in graph.nodes.values() for d, _ in node.requires} - set(graph))
    for name in missing:
        lines.append(
            f"  {_quote(name)} [label={_label(name, '(missing)')}, "
            f'style="dashed", color="{_MISSING}", fontcolor="{_MISSING}"];'
        )
    edges = sorted(
        (d, node.name, spec) for node in graph.nodes.values() for d, spec in node.requires
    )
    for dep, user, spec in edges:
        attrs = []
        if spec:
            attrs.append(f"label={_quote(spec)}")
        if not graph.satisfied(dep, spec):
            attrs += [f'color="{_MISSING}"', f'fontcolor="{_MISSING}"', "style=dashed"]
        elif not graph.nodes[user].enabled or not graph.nodes[dep].enabled:
            attrs += ['color="#aaaaaa"', "style=dashed"]
        elif dep in marked and user in marked:
            attrs += [f'color="{_HIGHLIGHT}"', "penwidth=2.5"]
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_quote(dep)} -> {_quote(user)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_text(
    graph: DependencyGraph,
    *,
    states: Mapping[str, str] | None = None,
    highlight: Iterable[str] = (),
) -> str:
    """One line per plugin in load order: ``*`` marks highlighted plugins, ``<-`` lists what
    each depends on; plugins stuck behind a cycle, then disabled ones, come last."""
    states = states or {}
    marked = set(highlight)
    order, stuck = graph.display_order()
    lines = []
    for name in order:
        node = graph.nodes[name]
        tag = f" [{states[name]}]" if name in states else ""
        tag = tag if node.enabled else " [disabled]"
        line = f"{'*' if name in marked else ' '} {name} {node.version}{tag}"
        if node.requires:
            line += "  <- " + ", ".join(_describe(graph, d, s) for d, s in node.requires)
        if name in stuck:
            line += "  (blocked by a dependency cycle)"
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def _describe(graph: DependencyGraph, dep: str, spec: str) -> str:
    target = graph.nodes.get(dep)
    if target is None:
        return f"{dep}{spec} (missing)"
    if not target.enabled:
        return f"{dep}{spec} (disabled)"
    return f"{dep}{spec}" if graph.satisfied(dep, spec) else f"{dep}{spec} (is {target.version})"


def _quote(text: str) -> str:
    """A DOT double-quoted string (names contain '-', so every ID is quoted)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(*lines: str) -> str:
    """A DOT label of several lines."""
    return '"' + "\\n".join(_quote(line)[1:-1] for line in lines) + '"'
