"""The full nbval run of every notebook and lab, as ``make test`` runs it.

Run ``python benchmarks/bench_nbval.py``. The wall time of ``pytest --nbval`` over
notebooks/ and labs/ (solutions included), in a subprocess. The peer, measured in the
same run, is the floor: the same number of one-cell notebooks that only
``%load_ext helixlab``, under the same command — what starting a kernel per notebook
costs. Target: the full run under 90 s on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NBVAL = [
    "--nbval",
    "--nbval-current-env",
    "--nbval-sanitize-with",
    str(ROOT / "tests" / "nbval_sanitize.cfg"),
    "-q",
    "-p",
    "no:cacheprovider",
]


def _notebooks() -> list[Path]:
    paths = [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("labs/**/*.ipynb")]
    return sorted(p for p in paths if ".ipynb_checkpoints" not in p.parts)


def _pytest(paths: list[Path], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *NBVAL, *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"nbval failed:\n{done.stdout[-3000:]}")
    return elapsed


def run() -> list[dict[str, Any]]:
    notebooks = _notebooks()
    full = _pytest(notebooks, ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        floor_paths = []
        for i in range(len(notebooks)):
            nb = nbformat.v4.new_notebook()
            cell = nbformat.v4.new_code_cell("%load_ext helixlab", execution_count=1)
            cell.outputs = [
                nbformat.v4.new_output(
                    "stream",
                    name="stdout",
                    text="helixlab ready: the kernel is `helix`; try `%helix help`, or define "
                    "a plugin in a `%%helix plugin` cell.\n",
                )
            ]
            nb.cells = [cell]
            path = Path(tmp) / f"floor_{i}.ipynb"
            nbformat.write(nb, path)
            floor_paths.append(path)
        floor = _pytest(floor_paths, ROOT)
    return [
        {
            "name": f"pytest --nbval, {len(notebooks)} notebooks",
            "seconds": full,
            "kernel_start_floor_s": floor,
            "vs_floor": full / floor,
            "cores": os.cpu_count(),
            "target": "< 90 s on 2 cores",
            "met": full < 90,
        }
    ]


def main() -> int:
    for row in run():
        print(
            f"{row['name']}: {row['seconds']:.1f} s (floor of one-cell notebooks "
            f"{row['kernel_start_floor_s']:.1f} s, {row['vs_floor']:.2f}x) on {row['cores']} "
            f"cores; target {row['target']}: {'met' if row['met'] else 'MISSED'}"
        )
        return 0 if row["met"] else 1
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
