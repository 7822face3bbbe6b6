"""Each wrong solution under ``tests/course/wrong_solutions/`` fails its lab's checks with its hint.

A wrong solution is the lab's solution with a learner's usual mistake put in (see the
README there). Its notebook's cells run in IPython as a learner runs them — the setup
cells, the changed ``%%helix plugin`` cell, then ``%helix check LAB`` — so the checks see
exactly what they would see in the notebook (the cell's own module state included).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import pytest
import yaml

from _ipython import ip_fixture, run  # noqa: F401  (the `ip` fixture)

ROOT = Path(__file__).resolve().parents[2]
WRONG = sorted((Path(__file__).parent / "wrong_solutions").glob("lab*/*.yaml"))
SOLUTIONS = {p.name.split("_")[0]: p for p in (ROOT / "labs" / "solutions").glob("lab*.ipynb")}


def cells_with_the_mistake(case: dict) -> tuple[list[str], str]:
    """The solution's setup cells, and its plugin cell with the case's replacements made.

    With ``rerun: true`` the setup ends with the solution's own plugin cell: the changed
    cell is then the learner's last edit of a cell that ran before.
    """
    nb = nbformat.read(SOLUTIONS[case["lab"]], as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    at = next(i for i, source in enumerate(code) if source.startswith("%%helix plugin"))
    setup = [source for source in code[:at] if source.strip() != "%load_ext helixlab"]
    plugin = code[at]
    if case.get("rerun"):
        setup.append(plugin)
    for change in case["replace"]:
        plugin = replaced(plugin, change["old"], change["new"])
    return setup, plugin


def replaced(source: str, old: str, new: str) -> str:
    """``old`` -> ``new`` in ``source``; both may be written dedented (YAML's ``|``)."""
    for indent in range(0, 13, 4):  # whole lines only: "\n" marks where they start
        before = "\n" + textwrap.indent(old, " " * indent)
        if before in "\n" + source:
            after = "\n" + textwrap.indent(new, " " * indent)
            return ("\n" + source).replace(before, after, 1)[1:]
    raise AssertionError(f"the solution no longer has:\n{old}")


@pytest.fixture
def learner(ip):
    yield ip
    upstream = ip.user_ns.get("upstream")
    if upstream is not None and hasattr(upstream, "stop"):
        upstream.stop()


@pytest.mark.parametrize("path", WRONG, ids=[f"{p.parent.name}/{p.stem}" for p in WRONG])
def test_a_wrong_solution_fails_with_the_hint_meant_for_it(learner, path):
    case = yaml.safe_load(path.read_text())
    setup, plugin = cells_with_the_mistake(case)
    for source in setup:
        plugin_cell = source.startswith("%%helix plugin")
        ran = run(learner, source, cell_id="the-plugin-cell" if plugin_cell else None)
        assert ran.error is None, ran.shown
    defined = run(learner, plugin, cell_id="the-plugin-cell" if case.get("rerun") else None)
    if not case.get("rerun"):  # a failed re-run may fail (that is the mistake)
        assert defined.error is None, defined.shown
    checked = run(learner, f"%helix check {case['lab']}")
    report = checked.result.result
    if "notice" in case:  # said first, above every check
        assert case["notice"] in report.notice, str(report)
        assert str(report).splitlines()[1].startswith(f"! {report.notice}"), str(report)
    results = {r.description: r for r in report.results}
    assert case["check"] in results, f"no check {case['check']!r} in {case['lab']}"
    result = results[case["check"]]
    assert not result.passed, f"{case['why']}: passed\n{report}"
    assert case["hint"] in result.hint, f"{case['why']}:\n{report}"
    if "failing" in case:
        assert [r.description for r in report.results if not r.passed] == case["failing"], str(
            report
        )


def test_every_lab_with_checks_that_see_behaviour_has_wrong_solutions():
    assert {p.parent.name for p in WRONG} >= {"lab2", "lab3"}


def test_every_lab_has_a_failed_rerun_case():
    """A learner whose last edit did not run must not see the running version's ✓."""
    reruns = {p.parent.name for p in WRONG if yaml.safe_load(p.read_text()).get("rerun")}
    assert reruns == {"lab1", "lab2", "lab3", "lab4"}
