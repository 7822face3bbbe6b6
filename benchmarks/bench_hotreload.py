"""How fast new code serves: a saved file, and a re-run ``%%helix plugin`` cell.

Run ``python benchmarks/bench_hotreload.py``.

- **save → serving**: a plugin file in a watched directory is rewritten with a new
  version; the time until ``kernel.get(name).version`` is the new one (the kernel's
  ``reloaded`` event). The peer is watchfiles itself, watching the same directory with the
  same settings in the same run: the time it takes merely to report the change. Target:
  under 300 ms with the default debounce.
- **cell re-run, cascade of 10**: a headless IPython shell runs a ``%%helix plugin`` cell
  defining a chain of 10 plugins, then re-runs it with the root's version changed, so all
  10 are reloaded; the time of that ``run_cell``. The peer is running the same code as an
  ordinary cell (Python defining the classes, nothing reloaded). Target: under 50 ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import watchfiles

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helixlab as hx

SAVES = 10
RERUNS = 20
CHAIN = 10

PLUGIN_FILE = """\
import helixlab as hx

class Timed(hx.Plugin):
    name = "timed"
    version = "{version}"
"""


def _watchfiles_latency(directory: Path, saves: int) -> list[float]:
    """Save→reported by watchfiles alone (same debounce and step as the kernel's watcher)."""
    stop = threading.Event()
    seen = threading.Event()
    ready = threading.Event()

    def watch() -> None:
        for changes in watchfiles.watch(
            directory,
            stop_event=stop,
            debounce=1600,
            step=50,
            watch_filter=watchfiles.PythonFilter(),
            yield_on_timeout=True,
            rust_timeout=50,
        ):
            ready.set()  # the first (empty) yield: the OS watches are in place
            if changes:
                seen.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    target = directory / "peer.py"
    times = []
    for i in range(saves):
        seen.clear()
        target.write_text(f"x = {i}\n")
        start = time.perf_counter()
        if not seen.wait(10):
            raise RuntimeError("watchfiles did not report the change within 10 s")
        times.append(time.perf_counter() - start)
    stop.set()
    thread.join(5)
    return times


def save_to_serving(saves: int = SAVES) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = directory / "timed.py"
        path.write_text(PLUGIN_FILE.format(version="1.0.0"))
        kernel = hx.Kernel()
        try:
            kernel.discover(directory)
            kernel.load_all()
            watcher = kernel.watch_files(directory)
            reloaded = threading.Event()
            kernel.subscribe(lambda e: e.kind == "reloaded" and reloaded.set())
            times = []
            for i in range(saves):
                version = f"1.0.{i + 1}"
                reloaded.clear()
                path.write_text(PLUGIN_FILE.format(version=version))
                start = time.perf_counter()
                if not reloaded.wait(10):
                    raise RuntimeError("the saved file was not reloaded within 10 s")
                times.append(time.perf_counter() - start)
                assert kernel.get("timed").version == version
            watcher.stop()
        finally:
            kernel.close()
    with tempfile.TemporaryDirectory() as tmp:
        peer = _watchfiles_latency(Path(tmp), saves)
    median, peer_median = statistics.median(times), statistics.median(peer)
    return {
        "name": "file save -> new version serving",
        "median_ms": median * 1e3,
        "max_ms": max(times) * 1e3,
        "watchfiles_alone_ms": peer_median * 1e3,
        "vs_watchfiles": median / peer_median,
        "target": "< 300 ms",
        "met": median < 0.300,
    }


def _chain_cell(root_version: str) -> str:
    lines = ["import helixlab as hx"]
    for i in range(CHAIN):
        deps = f'("p{i - 1}",)' if i else "()"
        version = root_version if i == 0 else "1.0.0"
        lines += [
            f"class P{i}(hx.Plugin):",
            f'    name = "p{i}"',
            f'    version = "{version}"',
            f"    dependencies = {deps}",
        ]
    return "\n".join(lines) + "\n"


def cell_rerun(reruns: int = RERUNS) -> dict[str, Any]:
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    shell = start_ipython()
    with capture_output():
        shell.run_cell("%load_ext helixlab")
        shell.run_cell("%%helix plugin\n" + _chain_cell("1.0.0"), cell_id="chain")
    kernel = shell.user_ns["helix"]
    times, plain = [], []
    for i in range(reruns):
        cell = _chain_cell(f"1.1.{i}")
        with capture_output():
            start = time.perf_counter()
            result = shell.run_cell("%%helix plugin\n" + cell, cell_id="chain")
            times.append(time.perf_counter() - start)
            if not result.success or kernel.reload_count("p9") != i + 1:
                raise RuntimeError(f"re-run {i} did not reload the cascade: {result.error_in_exec}")
            start = time.perf_counter()
            shell.run_cell(cell)
            plain.append(time.perf_counter() - start)
    with capture_output():
        shell.run_cell("%unload_ext helixlab")
    median, peer = statistics.median(times), statistics.median(plain)
    return {
        "name": f"%%helix plugin re-run, cascade of {CHAIN}",
        "median_ms": median * 1e3,
        "max_ms": max(times) * 1e3,
        "plain_cell_ms": peer * 1e3,
        "vs_plain_cell": median / peer,
        "target": "< 50 ms",
        "met": median < 0.050,
    }


def run() -> list[dict[str, Any]]:
    return [save_to_serving(), cell_rerun()]


def main() -> int:
    rows = run()
    for row in rows:
        peer = next(k for k in row if k.endswith("_ms") and k not in ("median_ms", "max_ms"))
        ratio = next(k for k in row if k.startswith("vs_"))
        print(
            f"{row['name']:<42} median {row['median_ms']:7.1f} ms  max {row['max_ms']:7.1f} ms  "
            f"{peer} {row[peer]:6.1f}  {ratio} {row[ratio]:5.2f}x  target {row['target']}: "
            f"{'met' if row['met'] else 'MISSED'}"
        )
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
