"""Benchmark the kernel's own cost of a hot reload, and that reloading does not leak.

Run ``python benchmarks/bench_reload.py``. The plugins do nothing, so every microsecond
measured is the kernel's: planning, events, binding, the swap, the drain and the stops.

Targets:

- a cascade reload (the root of a chain, or of a tree, with every other plugin depending
  on it) costs under 100 µs of kernel time per plugin reloaded, for 100 and 1,000 plugins
  (``report.timings["total"] / n``, median of several runs);
- 1,000 successive reloads of one plugin grow memory by under 1 MB (tracemalloc, measured
  after a warm-up that fills the bounded event log), and every old instance and every old
  class is garbage-collected.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helixlab as hx

SIZES = (100, 1_000)
RUNS = 7
RELOADS = 1_000
PER_PLUGIN_TARGET = 100e-6  # seconds
MEMORY_TARGET = 1_000_000  # bytes


def plugin_class(name: str, deps: tuple[str, ...] = (), version: str = "1.0.0") -> type:
    """A plugin that does nothing (no lifecycle method of its own)."""
    return type("Noop", (hx.Plugin,), {"name": name, "version": version, "dependencies": deps})


def build(kernel: hx.Kernel, n: int, shape: str) -> str:
    """Register and load ``n`` plugins; returns the root, on which all others depend."""
    for i in range(n):
        if i == 0:
            deps: tuple[str, ...] = ()
        elif shape == "chain":
            deps = (f"p{i - 1:04d}",)
        else:  # a tree: each node's parent is (i - 1) // 4
            deps = (f"p{(i - 1) // 4:04d}",)
        kernel.register(plugin_class(f"p{i:04d}", deps))
    kernel.load_all()
    return "p0000"


def cascade(n: int, shape: str, runs: int = RUNS) -> dict[str, Any]:
    """Kernel time per plugin of reloading the root of ``n`` plugins (median of ``runs``)."""
    with hx.Kernel() as kernel:
        root = build(kernel, n, shape)
        kernel.reload(root)  # warm-up
        reports, walls = [], []
        for _ in range(runs):
            started = time.perf_counter()
            reports.append(kernel.reload(root))
            walls.append(time.perf_counter() - started)
    assert all(len(r.order) == n for r in reports)
    per_plugin = statistics.median(r.timings["total"] / n for r in reports)
    return {
        # the whole call, planning and the hop to the kernel thread included: for information
        "wall_per_plugin": statistics.median(walls) / n,
        "name": f"cascade reload, {shape} of {n:,}",
        "value": per_plugin,
        "unit": "s/plugin",
        "target": PER_PLUGIN_TARGET,
        "met": per_plugin < PER_PLUGIN_TARGET,
    }


def memory(reloads: int = RELOADS) -> dict[str, Any]:
    """Bytes still allocated after ``reloads`` reloads of one plugin, beyond the warm-up."""
    tracemalloc.start()  # before the warm-up: events it logs are traced when replaced
    try:
        with hx.Kernel() as kernel:
            kernel.register(plugin_class("p"))
            kernel.load_all()
            for _ in range(kernel._events.maxlen):  # fill the bounded event log first
                kernel.reload("p")
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(reloads):
                kernel.reload("p")
            gc.collect()
            growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {
        "name": f"memory growth, {reloads:,} reloads",
        "value": growth,
        "unit": "bytes",
        "target": MEMORY_TARGET,
        "met": growth < MEMORY_TARGET,
    }


def garbage(reloads: int = RELOADS) -> dict[str, Any]:
    """Old instances and classes still alive after ``reloads`` reloads with new classes."""
    instances: list[weakref.ref] = []
    classes: list[weakref.ref] = []
    with hx.Kernel() as kernel:
        kernel.register(plugin_class("p"))
        kernel.load_all()
        for i in range(reloads):
            instances.append(weakref.ref(kernel.get("p")))
            classes.append(weakref.ref(kernel.plugin_class("p")))
            kernel.reload(plugin_class("p", version=f"1.0.{i + 1}"))
        gc.collect()
        alive = sum(r() is not None for r in instances) + sum(r() is not None for r in classes)
    return {
        "name": f"old instances + classes alive, {reloads:,} reloads",
        "value": alive,
        "unit": "objects",
        "target": 0,
        "met": alive == 0,
    }


def run(runs: int = RUNS, reloads: int = RELOADS) -> list[dict[str, Any]]:
    """Every measurement as a row: ``name``, ``value``, ``unit``, ``target``, ``met``.

    Cascade rows also carry ``wall_per_plugin``: the whole ``kernel.reload()`` call over
    ``n`` (planning and the hop to the kernel's thread included), reported, not targeted.
    """
    rows = [cascade(n, shape, runs) for n in SIZES for shape in ("chain", "tree")]
    rows.append(memory(reloads))
    rows.append(garbage(reloads))
    return rows


def _show(value: float, unit: str) -> str:
    if unit == "s/plugin":
        return f"{value * 1e6:.1f} µs/plugin"
    if unit == "bytes":
        return f"{value / 1e3:.1f} kB"
    return f"{value:g} {unit}"


def main() -> int:
    rows = run()
    print(f"kernel reload overhead (plugins that do nothing), median of {RUNS} runs")
    print(f"{'measurement':<44}{'value':>18}{'target':>18}  met  {'whole call':>16}")
    for row in rows:
        target = ("< " if row["unit"] != "objects" else "") + _show(row["target"], row["unit"])
        met = "yes" if row["met"] else "NO "
        wall = _show(row["wall_per_plugin"], "s/plugin") if "wall_per_plugin" in row else ""
        value = _show(row["value"], row["unit"])
        print(f"{row['name']:<44}{value:>18}{target:>18}  {met}  {wall:>16}")
    print("value: report.timings['total'] / n; whole call: kernel.reload() wall time / n")
    return 0 if all(row["met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
