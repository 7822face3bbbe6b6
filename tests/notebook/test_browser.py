"""JupyterLab in headless Chromium: the dashboard and the graph render, and they stay live.

A notebook loads helixlab, defines two dependent plugins in a ``%%helix plugin`` cell,
shows the dashboard and the graph; the test re-runs the plugin cell and clicks a reload
button, and watches the store's row count both reloads. A screenshot is saved under
``test-output/browser/``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
LABS = Path(__file__).resolve().parents[2] / "labs"

PLUGINS = """\
%%helix plugin
import helixlab as hx

runs = globals().get("runs", 0) + 1  # each run of this cell is a new version of the store

class Store(hx.Plugin):
    name = "store"
    version = f"1.{runs}"

class Api(hx.Plugin):
    name = "api"
    version = "1.0"
    dependencies = ("store",)"""


LOGGER = """\
%%helix plugin
import json
from typing import Literal
import helixlab as hx

LEVELS = ("debug", "info", "warning", "error")

class MyLoggerConfig(hx.PluginConfig):
    pass  # FIELDS

class MyLogger(hx.Plugin):
    name = "my-logger"
    config_model = MyLoggerConfig

    def init(self, ctx, config):
        self.config = config
        self.lines = []

    def log(self, level, message):
        if LEVELS.index(level) < LEVELS.index(self.config.level):
            return
        if self.config.format == "json":
            self.lines.append(json.dumps({"level": level, "message": message}))
        else:
            self.lines.append(f"{level.upper()} {message}")"""

FIELDS = (
    'level: Literal["debug", "info", "warning", "error"] = "info"\n'
    '    format: Literal["text", "json"] = "text"'
)

BOOM = """\
%%helix plugin
class Boom(hx.Plugin):
    name = "boom"

    def start(self, ctx):
        raise RuntimeError("no database")"""

COURSE = ("%load_ext helixlab", "%helix check lab1 --live", LOGGER, PLUGINS, "%helix graph", BOOM)


def notebook(path: Path, cells=("%load_ext helixlab", PLUGINS, "%helix dashboard", "%helix graph")):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for source in cells:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on loopback serving a temp dir with the notebook; yields the notebook URL."""
    root = tmp_path / "notebooks"
    root.mkdir()
    notebook(root / "browser.ipynb")
    notebook(root / "course.ipynb", COURSE)
    shutil.copy(LABS / "lab1_basic_plugin.ipynb", root / "lab1.ipynb")
    lab3 = nbformat.read(LABS / "lab3_middleware_plugin.ipynb", as_version=4)
    for cell in lab3.cells:
        if cell.source.startswith("%%helix plugin"):
            cell.source = lab3_gaps_in_helpers_only()
    nbformat.write(lab3, root / "lab3.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,  # the kernelspec's `python` resolves to this interpreter too
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.token={token}",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a loaded CI worker starts JupyterLab slowly
        while True:  # wait for the server to answer (a condition, bounded)
            try:
                if httpx.get(f"{base}/api", params={"token": token}, timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()}")
            time.sleep(0.2)
        yield f"{base}/lab/tree/{{}}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"Debian chromium not at {CHROMIUM}"
)

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's chromium through Playwright, one for the module (never a downloaded one)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page (its own context) for one test; each test sets its default timeout."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def run_all(page, url: str) -> None:
    """Open the notebook, wait for an idle kernel, run every cell."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        ".session.kernel.status === 'idle'"
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


def rerun(page, index: int, source: str | None = None) -> None:
    """Run cell ``index`` again, after replacing its text with ``source`` (as a learner edits)."""
    page.evaluate(
        "([index, source]) => { const nb = window.jupyterapp.shell.currentWidget.content;"
        " if (source !== null) { nb.widgets[index].model.sharedModel.setSource(source); }"
        " nb.activeCellIndex = index;"
        " return window.jupyterapp.commands.execute('notebook:run-cell'); }",
        [index, source],
    )


@needs_chromium
def test_graph_errors_and_the_live_check_panel_as_a_learner_sees_them(lab, page):
    sync_api = pytest.importorskip("playwright.sync_api")
    page.set_default_timeout(60_000)
    run_all(page, lab.format("course.ipynb"))
    cells = page.locator(".jp-Notebook .jp-Cell")

    # the live panel: the starter's gaps are ✗ once the plugin cell has run
    panel = cells.nth(1).locator(".helix-check-panel")
    sync_api.expect(panel.locator(".helix-check-fail")).to_have_count(4)
    sync_api.expect(panel.locator(".helix-check-hint")).to_contain_text(
        "MyLoggerConfig has no `level` and `format` yet"
    )
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "live-panel-before.png"))

    # %helix graph draws: an <svg> in that cell's own output, no <pre> hiding it
    # (JupyterLab draws image/svg+xml as an <img> of the <svg> document)
    graph = cells.nth(4).locator(".jp-OutputArea-output")
    drawing = graph.locator('img[src^="data:image/svg+xml"]')
    sync_api.expect(drawing).to_be_visible()
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=drawing.element_handle()
    )
    svg = urllib.parse.unquote(drawing.get_attribute("src").partition(",")[2])
    assert "<svg" in svg and "<title>store</title>" in svg and "<title>api</title>" in svg
    assert graph.locator("pre").count() == 0
    graph.first.scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "graph.png"))

    # a raise in start(): the learner's frame and line, then helixlab's message
    error = cells.nth(5).locator(".jp-OutputArea-output")
    sync_api.expect(error).to_contain_text('raise RuntimeError("no database")')
    sync_api.expect(error).to_contain_text(
        "ReloadError: Plugin 'boom' 0.1.0 was registered but failed in start: "
        "RuntimeError: no database"
    )
    text = error.inner_text()
    assert "line 6" in text and "run_cell_magic" not in text and "helixlab/" not in text
    error.first.scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "error.png"))

    # the learner fills in the gap and re-runs the cell: the panel turns ✓, in place
    rerun(page, 2, LOGGER.replace("pass  # FIELDS", FIELDS))
    sync_api.expect(panel.locator(".helix-check-fail")).to_have_count(0)
    sync_api.expect(panel.locator(".helix-check-pass")).to_have_count(6)
    sync_api.expect(panel.locator(".helix-check-changes")).to_contain_text("now ✓")
    assert cells.nth(2).locator(".helix-check-panel").count() == 0  # nothing elsewhere
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "live-panel-after.png"))
    for name in ("graph", "error", "live-panel-before", "live-panel-after"):
        assert (OUTPUT / f"{name}.png").stat().st_size > 0


def solution_cell(lab: str, folder: Path = LABS / "solutions") -> str:
    nb = nbformat.read(folder / lab, as_version=4)
    return next(c.source for c in nb.cells if c.source.startswith("%%helix plugin"))


def lab3_gaps_in_helpers_only() -> str:
    """Lab 3's plugin cell whose plugin class is the solution's, and whose helper classes
    (TokenBucket, the middleware) are still the exercise's: filling the lab in is then
    editing helper classes only."""
    plugin_class = "\n\nclass LabRateLimiter("
    exercise = solution_cell("lab3_middleware_plugin.ipynb", LABS)
    solution = solution_cell("lab3_middleware_plugin.ipynb")
    helpers, _, _ = exercise.partition(plugin_class)
    _, _, plugin = solution.partition(plugin_class)
    assert helpers != exercise and plugin, "lab 3's plugin class is no longer the cell's last"
    cell = f"{helpers}{plugin_class}{plugin}"
    assert cell != solution and "your code here" in cell.partition(plugin_class)[0]
    return cell


def cell_index(page, prefix: str) -> int:
    return page.evaluate(
        "(prefix) => window.jupyterapp.shell.currentWidget.content.widgets.findIndex("
        "w => w.model.sharedModel.getSource().startsWith(prefix))",
        prefix,
    )


@needs_chromium
def test_lab3_filled_in_by_editing_only_its_helper_classes_turns_tick_and_answers_429(lab, page):
    """Issue 19, item 1 as the learner meets it: the gaps of lab 3 are in TokenBucket and the
    middleware class, beside the plugin class in one cell; re-running that cell must reload
    the limiter, the panel turn ✓ and the demo cell show the 429."""
    sync_api = pytest.importorskip("playwright.sync_api")
    page.set_default_timeout(120_000)
    run_all(page, lab.format("lab3.ipynb"))
    cells = page.locator(".jp-Notebook .jp-Cell")
    last = cells.nth(cell_index(page, "server.stop()"))
    sync_api.expect(last).to_contain_text("gateway stopped")  # run-all is done
    panel = page.locator(".helix-check-panel")
    sync_api.expect(panel.locator(".helix-check-heading")).to_contain_text("checked")
    assert panel.locator(".helix-check-fail").count() > 0
    demo = cells.nth(cell_index(page, "import openai")).locator(".jp-OutputArea-output")
    sync_api.expect(demo).to_contain_text("alice: ['200', '200', '200', '200']")

    rerun(
        page,
        cell_index(page, "%%helix plugin"),
        solution_cell("lab3_middleware_plugin.ipynb"),
    )
    sync_api.expect(panel.locator(".helix-check-fail")).to_have_count(0)
    sync_api.expect(panel.locator(".helix-check-pass")).to_have_count(9)
    rerun(page, cell_index(page, "import openai"))
    # the cell's output, not its source (which has a `return "429"`)
    sync_api.expect(demo).to_contain_text("alice: ['200', '200', '200', '429']")
    demo.scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "lab3-helpers-filled.png"))
    assert (OUTPUT / "lab3-helpers-filled.png").stat().st_size > 0


@needs_chromium
def test_lab1_with_its_live_panel_goes_from_cross_to_tick_when_the_plugin_cell_is_fixed(lab, page):
    sync_api = pytest.importorskip("playwright.sync_api")
    page.set_default_timeout(60_000)
    run_all(page, lab.format("lab1.ipynb"))  # the exercise, as committed
    panel = page.locator(".helix-check-panel")
    sync_api.expect(panel).to_have_count(1)
    sync_api.expect(panel.locator(".helix-check-fail")).to_have_count(4)
    sync_api.expect(panel.locator(".helix-check-heading")).to_contain_text("2/6 checks pass")
    index = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets.findIndex("
        "w => w.model.sharedModel.getSource().startsWith('%%helix plugin'))"
    )
    rerun(page, index, solution_cell("lab1_basic_plugin.ipynb"))
    sync_api.expect(panel.locator(".helix-check-pass")).to_have_count(6)
    sync_api.expect(panel.locator(".helix-check-heading")).to_contain_text("6/6 checks pass")
    sync_api.expect(panel.locator(".helix-check-hint")).to_contain_text("every check passes")
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "lab1-live-panel.png"))
    assert (OUTPUT / "lab1-live-panel.png").stat().st_size > 0


@needs_chromium
def test_dashboard_and_graph_render_and_follow_reloads(lab, page):
    sync_api = pytest.importorskip("playwright.sync_api")
    page.set_default_timeout(30_000)
    run_all(page, lab.format("browser.ipynb"))

    dashboard = page.wait_for_selector(".jp-OutputArea-output .helix-dashboard")
    page.wait_for_selector(".jp-OutputArea-output .helix-graph svg")
    page.wait_for_selector(".jp-OutputArea-output svg .node")  # the dashboard's graph
    reloads = page.locator(".helix-dashboard-grid .helix-reloads.helix-row-store")
    sync_api.expect(reloads).to_have_text("0")
    sync_api.expect(page.locator(".helix-row-api.helix-depends-on")).to_have_text("store")

    # re-run the plugin cell: a new store version, reloaded with its dependent
    rerun(page, 1)
    output = page.locator(".jp-OutputArea-output", has_text="reloaded store")
    sync_api.expect(output.first).to_be_visible()
    sync_api.expect(reloads).to_have_text("1")
    sync_api.expect(page.locator(".helix-row-store.helix-version")).to_have_text("1.2")

    # the reload button: the row counts it
    page.click(".helix-reload-store")
    sync_api.expect(reloads).to_have_text("2")
    sync_api.expect(page.locator(".helix-status")).to_contain_text("reloaded store")
    graph = page.locator(".helix-graph svg")
    sync_api.expect(graph.locator(".node")).to_have_count(2)
    dashboard.scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "dashboard.png"), full_page=True)
    assert (OUTPUT / "dashboard.png").stat().st_size > 0
