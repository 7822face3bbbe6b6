"""One vocabulary across views, and what the course's texts say matches what happens
(issue 19, items 7 and 9)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from helixlab.fleet._widget import table_html as fleet_table
from helixlab.notebook._displays import HealthTable
from helixlab.notebook._html import reload_html
from helixlab.widgets import Dashboard

from _ipython import ip_fixture, run  # noqa: F401  (the `ip` fixture)

ROOT = Path(__file__).resolve().parents[2]
LABS = sorted((ROOT / "labs").glob("lab*.ipynb")) + sorted(
    (ROOT / "labs" / "solutions").glob("lab*.ipynb")
)


def test_health_has_one_set_of_words_in_every_view(kernel, make_plugin):
    kernel.register(make_plugin("fine"))
    kernel.register(make_plugin("sick", health_check=lambda self, ctx: "disk full"))
    kernel.load_all()
    statuses = kernel.health()
    words = {"healthy", "unhealthy"}
    assert {str(s).split(": ")[1].split(" ")[0] for s in statuses.values()} == words
    assert {row.health for row in kernel.info()} == words  # %helix list
    table = HealthTable(statuses)._html()  # %helix health
    assert ">healthy<" in table and ">unhealthy<" in table and ">active<" not in table
    board = Dashboard(kernel)
    try:
        assert board.wait_idle()
        assert {board.row(n).cells["health"].value for n in ("fine", "sick")} == words
        board.act("health", "")
        assert "health: 1 healthy, unhealthy: sick" in board.status.value
    finally:
        board.close()


def test_a_cell_that_loads_three_plugins_is_headed_by_all_three(kernel, make_plugin):
    classes = [make_plugin("store"), make_plugin("service", deps=("store",))]
    classes.append(make_plugin("api", deps=("service",)))
    report = kernel.define(classes, source="cell [1]", origin="cell")
    head = re.search(r"<b>(.*?)</b>", reload_html(report)).group(1)
    assert head == "loaded 3 new plugins: store, service, api"
    one = kernel.define([make_plugin("solo")], source="cell [2]", origin="cell")
    assert re.search(r"<b>(.*?)</b>", reload_html(one)).group(1) == "loaded solo 1.0.0 (new)"


def test_the_landing_notebook_says_where_the_file_browser_opens():
    """`make lab` opens the landing notebook: JupyterLab's file browser is then in its folder."""
    makefile = (ROOT / "Makefile").read_text()
    landing = re.search(r"^LANDING\s*[:?]?=\s*(\S+)", makefile, re.MULTILINE).group(1)
    folder = Path(landing).parent.as_posix()
    text = "".join(c.source for c in nbformat.read(ROOT / landing, as_version=4).cells)
    assert f"The file browser on the left opens in `{folder}/`" in text
    assert "at the course's root folder" not in text


def test_the_fleet_table_keeps_a_worker_on_one_line():
    status = {"fleet": "helixlab", "generation": 3, "digest": "abc", "workers": []}
    status["workers"].append(
        {"id": "worker-7f3a9c-host-long", "host": "h", "pid": 1, "generation": 3, "state": "ok"}
    )
    html = fleet_table(status, {})
    assert '<table class="helix-fleet">' in html and "<td>worker-7f3a9c-host-long</td>" in html
    assert ".helix-fleet th, .helix-fleet td { white-space: nowrap;" in html


@pytest.mark.parametrize("path", LABS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_step_cells_import_what_they_use(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        source = cell.source
        if cell.cell_type == "code" and not source.startswith("%%") and "hx." in source:
            assert "import helixlab as hx" in source, f"{cell.id} uses hx without importing it"


def test_a_step_cell_run_before_the_plugin_cell_says_so_in_one_line(ip):
    """After a kernel restart, lab 1's step-4 cell first (only %load_ext before it)."""
    nb = nbformat.read(ROOT / "labs" / "lab1_basic_plugin.ipynb", as_version=4)
    (step4,) = [c.source for c in nb.cells if c.get("id") == "lab1-06"]
    ran = run(ip, step4)
    lines = [line for line in ran.shown.splitlines() if line.strip()]
    assert lines == [
        "PluginNotFoundError: No plugin named 'my-logger' is registered. No plugins are known. "
        "If a `%%helix plugin` cell defines 'my-logger', run that cell first."
    ]
