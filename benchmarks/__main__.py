"""``make bench``: run every benchmark and print one table.

Each ``benchmarks/bench_*.py`` module exposes ``run() -> list[dict]``; a row has a
``name``, its measurements, and, where the issue set one, ``target`` and ``met``. The
peers each ratio is taken against are measured in the same run.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _format(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def main(argv: list[str]) -> int:
    wanted = set(argv)
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    print(f"# helixlab benchmarks, {datetime.date.today()}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    print()
    print("| benchmark | measurement | figures | target | met |")
    print("|---|---|---|---|---|")
    missed = 0
    for name in modules:
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        for row in module.run():
            figures = ", ".join(
                f"{k}={_format(v)}" for k, v in row.items() if k not in ("name", "target", "met")
            )
            met = {True: "yes", False: "**no**"}.get(row.get("met"), "")
            missed += row.get("met") is False
            print(
                f"| {name.removeprefix('bench_')} | {row['name']} | {figures} | "
                f"{row.get('target', '')} | {met} |"
            )
            sys.stdout.flush()
    print()
    print(f"{missed} target(s) missed" if missed else "all targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
