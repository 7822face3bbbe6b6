"""Drawing a graph (helixlab/notebook/_drawing.py): what a learner draws after a reload,
``to_dot``/``to_text`` of ``kernel.graph`` with the kernel's states and its last cascade;
graphviz reads the DOT; then the drawings of hand-built graphs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from _graphs import gateway_graph, node

from helixlab.kernel import DependencyGraph
from helixlab.kernel._graph import Node
from helixlab.notebook._drawing import STATE_COLORS, to_dot, to_text


@pytest.fixture
def reloaded(kernel, make_plugin):
    """``store <- api <- web`` and a disabled ``log``, after a reload of ``api``."""
    kernel.register(make_plugin("store"))
    kernel.register(make_plugin("api", deps=("store>=1.0",)))
    kernel.register(make_plugin("web", deps=("api",)))
    kernel.register(make_plugin("log", deps=("nowhere",)))
    kernel.apply_config({"plugins": {"log": {"enabled": False}}})
    assert kernel.load_all().ok
    kernel.reload(make_plugin("api", deps=("store>=1.0",), version="2.0.0"))
    return kernel


def states(kernel) -> dict[str, str]:
    return {row.name: row.state for row in kernel.info()}


def test_the_text_drawing_shows_load_order_states_and_the_last_cascade(reloaded):
    text = to_text(reloaded.graph, states=states(reloaded), highlight=reloaded.last_cascade)
    assert reloaded.last_cascade == ("api", "web")
    assert text.splitlines() == [
        "  store 1.0.0 [active]",
        "* api 2.0.0 [active]  <- store>=1.0",
        "* web 1.0.0 [active]  <- api",
        "  log 1.0.0 [disabled]  <- nowhere (missing)",
    ]


def test_the_dot_drawing_is_the_same_on_every_run_and_marks_the_cascade(reloaded):
    dot = to_dot(reloaded.graph, states=states(reloaded), highlight=reloaded.last_cascade)
    assert dot == to_dot(reloaded.graph, states=states(reloaded), highlight=reloaded.last_cascade)
    hot = [line for line in dot.splitlines() if "penwidth" in line]
    assert [re.match(r'\s*("[^"]+"(?: -> "[^"]+")?)', line).group(1) for line in hot] == [
        '"api"',
        '"web"',
        '"api" -> "web"',
    ]
    assert '"nowhere" [label="nowhere\\n(missing)"' in dot
    assert not re.search(r"0x[0-9a-f]{6,}", dot)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_graphviz_reads_the_dot_drawing(reloaded):
    dot = to_dot(
        reloaded.graph,
        states=states(reloaded),
        highlight=reloaded.last_cascade,
        title='after "api" 2.0.0',
    )
    drawn = subprocess.run(
        ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60, check=False
    )
    assert drawn.returncode == 0 and drawn.stderr == "", drawn.stderr
    assert "<svg" in drawn.stdout and "after &quot;api&quot; 2.0.0" in drawn.stdout


@pytest.fixture
def gateway() -> DependencyGraph:
    return gateway_graph()


# -- drawings of hand-built graphs ------------------------------------------------------


def dot_lines(dot: str, pattern: str) -> list[str]:
    return [line.strip() for line in dot.splitlines() if re.search(pattern, line)]


def test_to_dot_draws_arrows_from_dependency_to_dependent(gateway) -> None:
    dot = to_dot(gateway, title="gateway")
    assert dot.startswith("digraph ")
    assert 'label="gateway"' in dot
    assert '"custom-logger" [label="custom-logger\\n1.0.0"' in dot
    assert '"custom-logger" -> "rate-limiter" [label=">=1.0"];' in dot
    assert '"rate-limiter" -> "auth";' in dot
    assert not dot_lines(dot, r'"auth" ->')


def test_to_dot_colours_states_and_highlights_the_cascade(gateway) -> None:
    states = {"custom-logger": "active", "rate-limiter": "failed", "auth": "stopped"}
    dot = to_dot(gateway, states=states, highlight=["rate-limiter", "auth"])
    (logger,) = dot_lines(dot, r'^\s*"custom-logger" \[')
    (limiter,) = dot_lines(dot, r'^\s*"rate-limiter" \[')
    (auth,) = dot_lines(dot, r'^\s*"auth" \[')
    assert STATE_COLORS["active"] in logger and "penwidth" not in logger
    assert STATE_COLORS["failed"] in limiter and "penwidth=3" in limiter
    assert STATE_COLORS["stopped"] in auth and "penwidth=3" in auth
    assert len({STATE_COLORS[s] for s in states.values()}) == 3
    (hot,) = dot_lines(dot, r'"rate-limiter" -> "auth"')
    (cold,) = dot_lines(dot, r'"custom-logger" -> "rate-limiter"')
    assert "penwidth" in hot and "penwidth" not in cold


def test_to_dot_draws_missing_dependencies_dashed_red_and_is_deterministic(gateway) -> None:
    dot = to_dot(gateway)
    (ghost,) = dot_lines(dot, r'^\s*"nowhere" \[')
    assert "dashed" in ghost and "(missing)" in ghost
    shuffled_graph = DependencyGraph(reversed(list(gateway.nodes.values())))
    assert to_dot(shuffled_graph) == dot


def test_to_dot_quotes_awkward_names() -> None:
    dot = to_dot(DependencyGraph([Node('we"ird\\name')]))
    assert '"we\\"ird\\\\name" [label="we\\"ird\\\\name\\n0.0.0"' in dot


def test_to_text_lists_plugins_in_load_order(gateway) -> None:
    text = to_text(
        gateway,
        states={"custom-logger": "active", "rate-limiter": "active"},
        highlight=["rate-limiter"],
    )
    assert text.splitlines() == [
        "  metrics 2.0.0",
        "  custom-logger 1.0.0 [active]",
        "* rate-limiter 1.2.0 [active]  <- custom-logger>=1.0",
        "  auth 0.3.0  <- custom-logger, rate-limiter",
        "  legacy 0.1.0 [disabled]  <- nowhere (missing)",
    ]


def test_to_text_still_renders_a_broken_graph() -> None:
    graph = DependencyGraph(
        [node("base", "1.0"), node("a", "1.0", "b"), node("b", "1.0", "a", "base>=2")]
    )
    assert to_text(graph).splitlines() == [
        "  base 1.0",
        "  a 1.0  <- b  (blocked by a dependency cycle)",
        "  b 1.0  <- a, base>=2 (is 1.0)  (blocked by a dependency cycle)",
    ]
