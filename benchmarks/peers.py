"""``make bench-peers``: helixlab against LiteLLM's proxy, on the same upstream.

Not one of ``make bench``'s modules: it needs LiteLLM's proxy (``litellm[proxy]`` from
PyPI), which ``make bench-peers`` installs into its own virtual environment
(``.venv-peers``) so that its many pins never touch helixlab's. Run
``python -m benchmarks.peers --litellm .venv-peers/bin/litellm``.

Both proxies run as their own process in front of the fixed upstream of ``_harness``
(raw bytes on loopback, a few thousand requests per second alone), with equivalent
middleware: authentication and a rate limit far above the load.

- helixlab: ``helixlab serve`` with custom-provider, custom-auth (an HS256 JWT verified
  on every request) and rate-limiter.
- LiteLLM: ``litellm --config`` with the model on the upstream, a ``master_key`` (checked
  on every request) and the deployment's ``rpm`` enforced by the router's pre-call checks
  (LiteLLM's rate limit that needs no database).

Printed: added latency over the upstream alone (one client, sequential: the proxy's median
and p99 less the upstream's median; the upstream's own tail is scheduling noise),
throughput at 16 and 64 clients, CPU per request of the proxy process (and its children)
at 16 clients, JSON and streamed, and peak RSS, each with LiteLLM / helixlab as a ratio.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from benchmarks._harness import MODEL, Proc, free_port, request_body, role
from benchmarks.bench_gateway import PROVIDER, SECRET, start_helixlab, start_role, token

MASTER_KEY = "sk-bench-master-key"
HELIXLAB = """\
  custom-auth:
    priority: 20
    config:
      secret: "{secret}"
      issuer: bench
      audience: gateway
  rate-limiter:
    priority: 10
    config: {{requests_per_minute: 100000000, burst_size: 1000000}}
"""
LITELLM = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {upstream}/v1
      api_key: upstream-needs-none
      rpm: 100000000
router_settings:
  enable_pre_call_checks: true
general_settings:
  master_key: {master_key}
litellm_settings:
  telemetry: false
"""
SEQUENTIAL = 400
LOADED = 2000


def cpu_tree(pid: int) -> float:
    """CPU seconds of a process and its children (LiteLLM may fork workers)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def peak_rss_tree(pid: int) -> float:
    """Peak resident MiB of a process plus its children's (VmHWM, summed)."""
    total = 0.0
    proc = psutil.Process(pid)
    for p in (proc, *proc.children(recursive=True)):
        status = Path(f"/proc/{p.pid}/status")
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def start_litellm(litellm: str, upstream: str, folder: Path) -> tuple[Proc, str]:
    config = folder / "litellm.yaml"
    config.write_text(LITELLM.format(model=MODEL, upstream=upstream, master_key=MASTER_KEY))
    port = free_port()
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # no fetch of the price list
    argv = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    proc = Proc(argv, env=env, stderr=True)
    proc.wait_for("Uvicorn running", timeout=180)
    return proc, f"http://127.0.0.1:{port}"


def run(litellm: str) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            upstream_proc, upstream = start_role("upstream")
            procs.append(upstream_proc)
            config = "plugins:\n" + PROVIDER.format(upstream=upstream, model=MODEL)
            config += HELIXLAB.format(secret=SECRET)
            helix = start_helixlab(config, Path(folder), "helixlab")
            procs.append(helix[0])
            lite = start_litellm(litellm, upstream, Path(folder))
            procs.append(lite[0])
            load = Proc(role("load"))
            procs.append(load)
            servers = {
                "upstream alone": (upstream_proc, upstream, {}),
                "helixlab": (*helix, {"authorization": f"Bearer {token()}"}),
                "LiteLLM proxy": (*lite, {"authorization": f"Bearer {MASTER_KEY}"}),
            }
            for name, (proc, url, headers) in servers.items():
                results[name] = _measure(load, proc, url, headers)
                print(f"measured {name}", file=sys.stderr, flush=True)
        finally:
            for proc in procs:
                proc.stop()
    return results


def _ask(load: Proc, url: str, headers: dict, clients: int, requests: int, stream=False) -> Any:
    body = request_body(stream)
    result = load.ask(
        {"url": url, "clients": clients, "requests": requests, "body": body, "headers": headers}
    )
    if result["errors"]:
        raise RuntimeError(f"{url} answered {result['statuses']}")
    return result


def _measure(load: Proc, proc: Proc, url: str, headers: dict) -> dict[str, float]:
    _ask(load, url, headers, 16, 300)  # warm up
    _ask(load, url, headers, 16, 100, stream=True)
    sequential = [_ask(load, url, headers, 1, SEQUENTIAL // 4) for _ in range(4)]
    figures = {
        "median_ms": statistics.median(r["median_ms"] for r in sequential),
        "p99_ms": statistics.median(r["p99_ms"] for r in sequential),
    }
    for clients in (16, 64):
        before = cpu_tree(proc.pid)
        result = _ask(load, url, headers, clients, LOADED)
        figures[f"rps_{clients}"] = result["rps"]
        if clients == 16:
            figures["cpu_ms_per_request"] = (cpu_tree(proc.pid) - before) / result["count"] * 1e3
    before = cpu_tree(proc.pid)
    result = _ask(load, url, headers, 16, LOADED // 4, stream=True)
    figures["stream_rps_16"] = result["rps"]
    figures["stream_cpu_ms_per_request"] = (cpu_tree(proc.pid) - before) / result["count"] * 1e3
    figures["peak_rss_mb"] = peak_rss_tree(proc.pid)
    return figures


def report(results: dict[str, dict[str, float]]) -> str:
    up, hx, lite = results["upstream alone"], results["helixlab"], results["LiteLLM proxy"]
    rows = [
        (
            "added latency, median (ms)",
            hx["median_ms"] - up["median_ms"],
            lite["median_ms"] - up["median_ms"],
        ),
        (
            "added latency, p99 (ms)",
            hx["p99_ms"] - up["median_ms"],
            lite["p99_ms"] - up["median_ms"],
        ),
        ("throughput, 16 clients (req/s)", hx["rps_16"], lite["rps_16"]),
        ("throughput, 64 clients (req/s)", hx["rps_64"], lite["rps_64"]),
        ("CPU per request, 16 clients (ms)", hx["cpu_ms_per_request"], lite["cpu_ms_per_request"]),
        ("streamed throughput, 16 clients (req/s)", hx["stream_rps_16"], lite["stream_rps_16"]),
        (
            "streamed CPU per request (ms)",
            hx["stream_cpu_ms_per_request"],
            lite["stream_cpu_ms_per_request"],
        ),
        ("peak RSS (MiB)", hx["peak_rss_mb"], lite["peak_rss_mb"]),
    ]
    lines = [
        f"# helixlab vs LiteLLM proxy, {datetime.date.today()}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}",
        f"upstream alone: median {up['median_ms']:.3f} ms, {up['rps_16']:.0f} req/s at 16 "
        f"clients, {up['rps_64']:.0f} at 64",
        "",
        "| measurement | helixlab | LiteLLM proxy | LiteLLM / helixlab |",
        "|---|---|---|---|",
    ]
    for name, mine, theirs in rows:
        ratio = theirs / mine if mine else float("nan")
        lines.append(f"| {name} | {mine:.3f} | {theirs:.3f} | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.peers")
    parser.add_argument("--litellm", default=".venv-peers/bin/litellm")
    args = parser.parse_args(argv)
    print(report(run(args.litellm)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
