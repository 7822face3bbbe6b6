"""The hand-built dependency graph the kernel's graph tests and the notebook's drawing tests
both read (the drawing moved to the notebook layer; the graph it draws stayed the same)."""

from __future__ import annotations

from helixlab.kernel._graph import DependencyGraph, Node
from helixlab.kernel._plugin import parse_dependency


def node(name: str, version: str = "1.0.0", *requires: str, **kw: object) -> Node:
    """A Node declared the way a plugin class declares it: ``node("b", "1.0", "a>=1")``."""
    return Node(name, version, requires=tuple(parse_dependency(r, name) for r in requires), **kw)


def gateway_graph() -> DependencyGraph:
    """A course gateway's plugins: a chain, a priority, a loner and a disabled one."""
    return DependencyGraph(
        [
            node("custom-logger", "1.0.0"),
            node("rate-limiter", "1.2.0", "custom-logger>=1.0"),
            node("auth", "0.3.0", "custom-logger", "rate-limiter", priority=5),
            node("metrics", "2.0.0", priority=1),
            node("legacy", "0.1.0", "nowhere", enabled=False),
        ]
    )
