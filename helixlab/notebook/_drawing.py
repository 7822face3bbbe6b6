"""Drawing a kernel's dependency graph as DOT and as text, from its public API only.

Both are deterministic (sorted), so notebooks can compare them: nodes coloured by state,
the last reload cascade highlighted, missing or unsatisfied dependencies dashed in red.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ..kernel import DependencyGraph

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
_HIGHLIGHT, _MISSING = "#1f6feb", "#d62728"


def to_dot(
    graph: DependencyGraph,
    *,
    states: Mapping[str, str] | None = None,
    highlight: Iterable[str] = (),
    title: str | None = None,
) -> str:
    """Graphviz DOT source; arrows run from a dependency to its dependents (start order)."""
    states, marked, nodes = states or {}, set(highlight), graph.nodes
    lines = [
        "digraph helixlab {",
        '  graph [rankdir=LR, fontname="Helvetica"'
        + (f", label={_quote(title)}, labelloc=t" if title else "")
        + "];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fillcolor="#ffffff"];',
        '  edge [color="#555555"];',
    ]
    for name in sorted(nodes):
        attrs = [f"label={_label(name, nodes[name].version)}"]
        if (state := states.get(name)) is not None:
            color = STATE_COLORS.get(str(state), "#ffffff")
            attrs += [f'fillcolor="{color}"', f"tooltip={_quote(str(state))}"]
        if not nodes[name].enabled:
            attrs += ['style="rounded,filled,dashed"', 'fontcolor="#777777"']
        if name in marked:
            attrs += [f'color="{_HIGHLIGHT}"', "penwidth=3"]
        lines.append(f"  {_quote(name)} [{', '.join(attrs)}];")
    edges = sorted((d, node.name, spec) for node in nodes.values() for d, spec in node.requires)
    for name in sorted({d for d, _, _ in edges} - set(nodes)):
        lines.append(
            f"  {_quote(name)} [label={_label(name, '(missing)')}, "
            f'style="dashed", color="{_MISSING}", fontcolor="{_MISSING}"];'
        )
    for dep, user, spec in edges:
        attrs = [f"label={_quote(spec)}"] if spec else []
        if not graph.satisfied(dep, spec):
            attrs += [f'color="{_MISSING}"', f'fontcolor="{_MISSING}"', "style=dashed"]
        elif not nodes[user].enabled or not nodes[dep].enabled:
            attrs += ['color="#aaaaaa"', "style=dashed"]
        elif dep in marked and user in marked:
            attrs += [f'color="{_HIGHLIGHT}"', "penwidth=2.5"]
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_quote(dep)} -> {_quote(user)}{suffix};")
    return "\n".join([*lines, "}", ""])


def to_text(
    graph: DependencyGraph,
    *,
    states: Mapping[str, str] | None = None,
    highlight: Iterable[str] = (),
) -> str:
    """One line per plugin in load order: ``*`` marks highlighted plugins, ``<-`` lists what
    each depends on; plugins stuck behind a cycle, then disabled ones, come last."""
    states, marked, nodes = states or {}, set(highlight), graph.nodes
    order, stuck = graph.display_order()
    lines = []
    for name in order:
        node = nodes[name]
        tag = " [disabled]" if not node.enabled else f" [{states[name]}]" if name in states else ""
        line = f"{'*' if name in marked else ' '} {name} {node.version}{tag}"
        needs = []
        for dep, spec in node.requires:
            if (target := nodes.get(dep)) is None:
                needs.append(f"{dep}{spec} (missing)")
            elif not target.enabled:
                needs.append(f"{dep}{spec} (disabled)")
            else:
                ok = graph.satisfied(dep, spec)
                needs.append(f"{dep}{spec}" + ("" if ok else f" (is {target.version})"))
        line += f"  <- {', '.join(needs)}" if needs else ""
        lines.append(line + ("  (blocked by a dependency cycle)" if name in stuck else ""))
    return "".join(line + "\n" for line in lines)


def _quote(text: str) -> str:
    """A DOT double-quoted string (names contain '-', so every ID is quoted)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(*lines: str) -> str:
    """A DOT label of several lines."""
    return '"' + "\\n".join(_quote(line)[1:-1] for line in lines) + '"'
