"""`%helix check` in the learner's notebook and `helixlab grade` on the notebook handed in
agree when the learner's last edit of the plugin cell did not run (issue 19, item 2).

In the notebook, the correct cell ran first (its version still runs), then the edited one
failed; the grader runs the notebook as saved, top to bottom, in a fresh kernel.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

from helixlab import grading

from _ipython import ip_fixture, run  # noqa: F401  (the `ip` fixture)

pytestmark = pytest.mark.timeout(600)

SOLUTION = Path(__file__).resolve().parents[2] / "labs/solutions/lab1_basic_plugin.ipynb"
LIMITS = grading.Limits(cell=30, notebook=240, check=60)

#: edit -> (what the plugin cell becomes, whether the edit replaces the cell or is a copy below)
EDITS = {
    "syntax_error": (("def log(self, level, message):", "def log(self, level, message)"), False),
    "renamed": (('name = "my-logger"', 'name = "my-loger"'), False),
    "broken_copy_below": (("class MyLogger(hx.Plugin):", "class MyLogger(hx.Plugin, oops):"), True),
}


def _plugin_index(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.source.startswith("%%helix plugin"))


def handed_in(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(SOLUTION, as_version=4)
    (old, new), copy_below = EDITS[name]
    at = _plugin_index(nb)
    edited = copy.deepcopy(nb.cells[at])
    edited.source = edited.source.replace(old, new)
    edited.outputs = []
    if copy_below:
        edited.id = "the-copy"
        nb.cells.insert(at + 1, edited)
    else:
        nb.cells[at] = edited
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict[str, bool]]:
    folder = tmp_path_factory.mktemp("handed_in")
    paths = []
    for name in EDITS:
        paths.append(folder / f"{name}.ipynb")
        nbformat.write(handed_in(name), paths[-1])
    grades = grading.grade("lab1", paths, limits=LIMITS)
    return {Path(g.submission).stem: {c.description: c.passed for c in g.checks} for g in grades}


@pytest.mark.parametrize("name", list(EDITS))
def test_the_notebook_and_the_grader_give_the_same_verdict(ip, graded, name):
    solution = nbformat.read(SOLUTION, as_version=4)
    at = _plugin_index(solution)
    (old, new), copy_below = EDITS[name]
    cells = [c for c in solution.cells[:at] if c.cell_type == "code"]
    for cell in cells:
        if cell.source.strip() != "%load_ext helixlab":
            assert run(ip, cell.source).error is None
    good = solution.cells[at]
    assert run(ip, good.source, cell_id=good.id).error is None  # this version keeps running
    edited = good.source.replace(old, new)
    run(ip, edited, cell_id="the-copy" if copy_below else good.id)  # the last edit
    report = run(ip, "%helix check lab1").result.result
    in_notebook = {r.description: r.passed for r in report.results}
    assert in_notebook == {d: p for d, p in graded[name].items() if d in in_notebook}
    assert not any(in_notebook.values()), str(report)
    assert "did not run" in report.notice or "now defines" in report.notice
