"""The labs as a learner runs them: in another order than top to bottom, and re-run.

nbval runs each notebook once, top to bottom; a learner re-runs cells. Here a real
kernel (nbclient) runs the lab, then re-runs cells, and what the text says must still be
what the cells show.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def shown(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "".join(parts)


IMPORT = "import helixlab as hx\n\n"  # what a step cell that uses hx starts with


def index(nb, start: str) -> int:
    return next(
        i for i, c in enumerate(nb.cells) if c.source.removeprefix(IMPORT).startswith(start)
    )


def test_lab1_step4_shows_the_default_level_after_a_rerun_of_the_plugin_cell_and_step_4():
    path = ROOT / "labs" / "solutions" / "lab1_basic_plugin.ipynb"
    nb = nbformat.read(path, as_version=4)
    plugin, step4 = index(nb, "%%helix plugin"), index(nb, "## Step 4") + 1
    json_step = index(nb, 'try:\n    helix.configure("my-logger", {"level": "debug"')
    client = NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(path.parent)}}
    )
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and i <= json_step:
                client.execute_cell(cell, i)
        first = shown(nb.cells[step4])
        assert first == "['INFO hello', 'ERROR disk full']"  # what the text says
        # the learner edits the plugin, re-runs its cell, then step 4 again: the JSON
        # configuration of the step after it must not carry over
        client.execute_cell(nb.cells[plugin], plugin)
        client.execute_cell(nb.cells[step4], step4)
        assert shown(nb.cells[step4]) == first
        client.execute_cell(nb.cells[json_step], json_step)
        client.execute_cell(nb.cells[step4], step4)
        assert shown(nb.cells[step4]) == first
