"""Re-execute notebooks in place so their committed outputs are fresh and deterministic.

``make notebooks`` runs this over notebooks/ and labs/ (labs/solutions/ included). Each
notebook runs top to bottom in a fresh kernel from this environment, with its working
directory set to the notebook's folder; cells tagged ``raises-exception`` may fail. What
varies between runs and is not compared by nbval (execution timings, widget state and
widget views, whose model ids are new each run) is dropped, so a re-run without changes
leaves no diff; a saved widget shows as its text form until the notebook runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def clean(nb: nbformat.NotebookNode) -> None:
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            for output in cell.outputs:
                output.get("data", {}).pop(WIDGET_VIEW, None)
                output.get("metadata", {}).pop(WIDGET_VIEW, None)


def run(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    clean(nb)
    nbformat.write(nb, path)


def main(argv: list[str]) -> int:
    paths = []
    for arg in argv or ["notebooks", "labs"]:
        p = Path(arg)
        paths += sorted(p.rglob("*.ipynb")) if p.is_dir() else [p]
    paths = [p for p in paths if ".ipynb_checkpoints" not in p.parts]
    for path in paths:
        print(f"executing {path}", flush=True)
        run(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
