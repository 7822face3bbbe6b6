"""Re-run equivalence, as a property: after any sequence of edits and re-runs of a plugin
cell in a live notebook, the running plugins behave as a fresh kernel running the cell's
last good version would.

The cell has a constant, a helper function, a helper class, a plugin using them and a
dependent plugin. Edits change each of them, break the cell (a syntax error, an exception
at definition, a start that fails, a renamed plugin) and undo earlier edits. After a failed
run nothing was reloaded (the same instances serve); after each good run the live
plugins answer as the fresh kernel's do.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import helixlab as hx

from _ipython import ip_fixture, run  # noqa: F401  (the `ip` fixture)

CELL = """\
import helixlab as hx

RATE = {rate}


def refill(tokens):
    return tokens + RATE * {step}


class Bucket:
    size = {size}

    def capacity(self):
        return refill(self.size)


class Limiter(hx.Plugin):
    name = "{name}"

    def start(self, ctx):
        self.bucket = Bucket()
        self.at_start = refill(0){fail}

    def describe(self):
        return (RATE, refill(1), self.at_start, self.bucket.capacity())


class Reporter(hx.Plugin):
    name = "reporter"
    dependencies = ("limiter",)

    def init(self, ctx, config):
        self.limiter = ctx.get("limiter")

    def report(self):
        return "{prefix}", self.limiter.describe()
{tail}"""

CELL_ID = "the-plugin-cell"  # as Jupyter gives it: a renamed plugin is refused
GOOD = {"name": "limiter", "fail": "", "tail": ""}
BREAKS = {
    "syntax": {"tail": "def broken(:\n"},
    "raises at definition": {"tail": "raise RuntimeError('at definition')\n"},
    "start fails": {"fail": "\n        raise RuntimeError('port in use')"},
    "renamed": {"name": "limitter"},
}

edits = st.fixed_dictionaries(
    {
        "rate": st.sampled_from([1, 2]),
        "step": st.sampled_from([1, 3]),
        "size": st.sampled_from([5, 10]),
        "prefix": st.sampled_from(["a", "b"]),
        "broken": st.sampled_from([None, None, *BREAKS]),
    }
)


def source(edit: dict[str, Any]) -> str:
    parts = {**GOOD, **BREAKS.get(edit["broken"] or "", {})}
    values = {k: v for k, v in edit.items() if k != "broken"}
    return CELL.format(**values, **parts)


def behaviour(kernel: hx.Kernel) -> tuple:
    return kernel.get("limiter").describe(), kernel.get("reporter").report()


def fresh(cell: str) -> tuple:
    """A new kernel running the cell from the top, in a namespace of its own."""
    namespace: dict[str, Any] = {}
    exec(compile(cell, "<fresh>", "exec"), namespace)
    kernel = hx.Kernel()
    try:
        kernel.register(namespace["Limiter"])
        kernel.register(namespace["Reporter"])
        kernel.load_all()
        return behaviour(kernel)
    finally:
        kernel.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(edits, min_size=1, max_size=6))
def test_rerunning_edited_cells_behaves_as_a_fresh_run_of_the_last_good_cell(ip, steps):
    run(ip, "%helix reset")
    first = {"rate": 1, "step": 1, "size": 5, "prefix": "a", "broken": None}
    ran = run(ip, "%%helix plugin\n" + source(first), cell_id=CELL_ID)
    assert ran.error is None, ran.shown
    good = source(first)
    kernel = ip.user_ns["helix"]
    for edit in steps:
        before = {n: kernel.get(n) for n in ("limiter", "reporter")}
        ran = run(ip, "%%helix plugin\n" + source(edit), cell_id=CELL_ID)
        if edit["broken"] is None:
            assert ran.error is None, ran.shown
            good = source(edit)
        else:  # refused or rolled back: nothing was reloaded, the old instances serve
            assert ran.error is not None, ran.shown
            assert {n: kernel.get(n) for n in ("limiter", "reporter")} == before
            continue
        assert behaviour(kernel) == fresh(good), (ran.shown, edit)
    assert [kernel.state(n) for n in ("limiter", "reporter")] == [hx.PluginState.ACTIVE] * 2


@pytest.mark.parametrize("broken", list(BREAKS))
def test_each_kind_of_failed_edit_changes_nothing(ip, broken):
    """The examples the property above draws from, each once."""
    test_rerunning_edited_cells_behaves_as_a_fresh_run_of_the_last_good_cell.hypothesis.inner_test(
        ip,
        [
            {"rate": 2, "step": 3, "size": 10, "prefix": "b", "broken": broken},
            {"rate": 1, "step": 1, "size": 5, "prefix": "a", "broken": None},  # undone
            {"rate": 2, "step": 3, "size": 10, "prefix": "b", "broken": None},
        ],
    )
