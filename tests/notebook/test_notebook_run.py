"""A small notebook run end to end: by nbclient, and under ``pytest --nbval``.

``tests/notebook/notebooks/smoke.ipynb`` is committed with its outputs (nbval compares against
them). Regenerate it after a deliberate change of what the notebook shows::

    .venv/bin/python tests/notebook/test_notebook_run.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent
NOTEBOOK = HERE / "notebooks" / "smoke.ipynb"
SANITIZE = HERE.parent / "nbval_sanitize.cfg"

STORE = """\
%%helix plugin
import helixlab as hx

class Store(hx.Plugin):
    name = "store"
    version = "{version}"
    description = "keeps things"

class Api(hx.Plugin):
    name = "api"
    version = "1.0"
    dependencies = ("store",)

    def init(self, ctx, config):
        self.store = ctx.get("store")"""

CELLS = [
    ("markdown", "# helixlab smoke test\nTwo dependent plugins, a reload, the views."),
    ("code", "%load_ext helixlab"),
    ("code", STORE.format(version="1.0")),
    ("code", "%helix list"),
    ("code", "%helix graph --format text"),
    ("code", "%helix graph"),
    ("code", STORE.format(version="1.1")),
    ("code", "%helix reload store --dry-run"),
    ("code", "%helix events -n 4"),
    ("code", "%%helix config\nplugins:\n  store:\n    priority: 3"),
    ("code", "%helix health"),
    ("code", "%helix dashboard"),
    ("code", "helix"),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in CELLS:
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(source))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"  # stable ids: a regenerated notebook diffs cleanly
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(cwd)}}
    )
    return client.execute()


def texts(nb: nbformat.NotebookNode) -> list[list[str]]:
    """Per code cell: every stream text and ``text/plain``, as nbval compares them."""
    shown = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        out = []
        for output in cell.outputs:
            if output.output_type == "stream":
                out.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                out.append(output.data.get("text/plain", ""))
            elif output.output_type == "error":
                out.append(f"{output.ename}: {output.evalue}")
        shown.append(out)
    return shown


def test_the_notebook_runs_end_to_end_with_nbclient(tmp_path):
    ran = execute(build(), tmp_path)
    shown = texts(ran)
    assert all(o.output_type != "error" for c in ran.cells for o in c.get("outputs", []))
    assert shown[0] == [
        "helixlab ready: the kernel is `helix`; try `%helix help`, "
        "or define a plugin in a `%%helix plugin` cell.\n"
    ]
    assert shown[1] == ["loaded store 1.0 (new)\nloaded api 1.0 (new)"]
    assert shown[5] == [
        "Store changed: reloading store\n"
        "reloaded store: 2 plugin(s), dependencies first\n  1. store 1.0 -> 1.1\n  2. api 1.0"
    ]
    graph = ran.cells[5].outputs[0].data
    assert "<svg" in graph["image/svg+xml"] and "store" in graph["text/plain"]
    dashboard = ran.cells[11].outputs[0].data
    assert "application/vnd.jupyter.widget-view+json" in dashboard
    assert dashboard["text/plain"] == "Dashboard(helixlab plugins, live)"
    # what is committed is what a fresh run shows (the nbval test checks it cell by cell)
    assert shown == texts(nbformat.read(NOTEBOOK, as_version=4))


def test_the_committed_notebook_passes_nbval():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(SANITIZE),
            "-p",
            "no:cacheprovider",
            "-q",
            str(NOTEBOOK),
        ],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    code_cells = sum(kind == "code" for kind, _ in CELLS)
    assert f"{code_cells} passed" in result.stdout


if __name__ == "__main__":
    NOTEBOOK.parent.mkdir(exist_ok=True)
    nbformat.write(execute(build(), NOTEBOOK.parent), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
