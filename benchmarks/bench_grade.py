"""Grading a class: ``helixlab grade`` over N submissions, against running them bare.

Run ``python benchmarks/bench_grade.py``. The path an instructor takes: the
``helixlab grade`` command in a subprocess (``--jobs`` left at the cores), over 8 copies
of lab 1's solution, then over the 8 committed lab notebooks (labs 1-4, exercises and
solutions, each graded on its own lab). The peer, in the same run, executes the same
notebooks with plain nbclient (a fresh kernel each, as many at once as the grader),
with no checks, no fingerprints, no reports: ``vs_nbclient`` is what grading costs on
top of running the notebooks. Target (issue 23): at most 1.5x.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted((ROOT / "labs").glob("lab*.ipynb"))
TARGET = 1.5  # issue 23: grading at most 1.5x plain nbclient on the same notebooks


def _grade(lab: str, paths: list[Path], out: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "helixlab", "grade", lab, *map(str, paths), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"helixlab grade failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _bare(paths: list[Path]) -> float:
    async def main() -> None:
        gate = asyncio.Semaphore(os.cpu_count() or 1)

        async def one(path: Path) -> None:
            async with gate:
                nb = nbformat.read(path, as_version=4)
                with tempfile.TemporaryDirectory() as tmp:
                    client = NotebookClient(
                        nb, kernel_name="python3", allow_errors=True, timeout=120,
                        resources={"metadata": {"path": tmp}},
                    )  # fmt: skip
                    await client.async_execute()

        await asyncio.gather(*(one(p) for p in paths))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def _row(name: str, graded: float, bare: float, count: int) -> dict[str, Any]:
    return {
        "name": name,
        "seconds": graded,
        "per_submission_s": graded / count,
        "nbclient_s": bare,
        "vs_nbclient": graded / bare,
        "cores": os.cpu_count(),
        "target": f"<= {TARGET:g}x nbclient",
        "met": graded / bare <= TARGET,
    }


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        copies = []
        for i in range(8):
            copies.append(folder / f"student{i}.ipynb")
            shutil.copy(ROOT / "labs" / "solutions" / LABS[0].name, copies[-1])
        graded = _grade("lab1", copies, folder / "lab1.csv")
        rows = [_row("helixlab grade, 8 lab 1 solutions", graded, _bare(copies), 8)]
        graded = 0.0
        everything = [*LABS, *(ROOT / "labs" / "solutions" / p.name for p in LABS)]
        for path in LABS:
            lab = path.name.split("_")[0]
            pair = [path, ROOT / "labs" / "solutions" / path.name]
            graded += _grade(lab, pair, folder / f"{lab}.csv")
        name = "helixlab grade, labs 1-4 (8 exercises and solutions, 4 runs)"
        rows.append(_row(name, graded, _bare(everything), len(everything)))
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
