"""Drawing a kernel's graph (helixlab/kernel/_drawing.py): what a learner draws after a
reload, ``kernel.graph.to_dot``/``to_text`` with the kernel's states and its last cascade;
graphviz reads the DOT. (The drawings of hand-built graphs: tests/kernel/test_graph.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest


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
    text = reloaded.graph.to_text(states=states(reloaded), highlight=reloaded.last_cascade)
    assert reloaded.last_cascade == ("api", "web")
    assert text.splitlines() == [
        "  store 1.0.0 [active]",
        "* api 2.0.0 [active]  <- store>=1.0",
        "* web 1.0.0 [active]  <- api",
        "  log 1.0.0 [disabled]  <- nowhere (missing)",
    ]


def test_the_dot_drawing_is_the_same_on_every_run_and_marks_the_cascade(reloaded):
    dot = reloaded.graph.to_dot(states=states(reloaded), highlight=reloaded.last_cascade)
    assert dot == reloaded.graph.to_dot(states=states(reloaded), highlight=reloaded.last_cascade)
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
    dot = reloaded.graph.to_dot(
        states=states(reloaded), highlight=reloaded.last_cascade, title='after "api" 2.0.0'
    )
    drawn = subprocess.run(
        ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60, check=False
    )
    assert drawn.returncode == 0 and drawn.stderr == "", drawn.stderr
    assert "<svg" in drawn.stdout and "after &quot;api&quot; 2.0.0" in drawn.stdout
