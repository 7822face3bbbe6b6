"""``make bench-peers``: helixlab against LiteLLM's proxy and Portkey's gateway, on the same
upstream, with the floor (a bare pass-through on the same fast server) measured beside.

Not one of ``make bench``'s modules: it needs the peers, which ``make bench-peers``
installs each into a folder of its own (``tools/peers_setup.sh``): LiteLLM's proxy
(``litellm[proxy]`` from PyPI) into ``.venv-peers``, Portkey's gateway
(``@portkey-ai/gateway`` from npm) into ``.peers/portkey``. Run ``python -m
benchmarks.peers --litellm .venv-peers/bin/litellm --portkey .peers/portkey``.

Every server runs as its own process in front of the fixed upstream of ``_harness`` (raw
bytes on loopback, never the bottleneck):

- ``pass-through``: the floor, a Starlette route forwarding to the upstream with one
  pooled ``httpx.AsyncClient`` under uvicorn on uvloop + httptools (the fast server).
- ``helixlab``: ``helixlab serve`` (its defaults: uvloop + httptools) with custom-provider
  only: what Portkey's gateway does (no auth, no limit).
- ``helixlab + auth``: the same plus custom-auth (an HS256 JWT verified on every
  request) and rate-limiter, against LiteLLM with the equivalent middleware.
- ``Portkey``: ``node build/start-server.js --port=P --headless`` (``NODE_ENV=production``),
  the OpenAI provider pointed at the upstream by the ``x-portkey-provider: openai`` and
  ``x-portkey-custom-host`` headers of each request.
- ``LiteLLM``: ``litellm --config`` with the model on the upstream, a ``master_key``
  (checked on every request) and the deployment's ``rpm`` enforced by the router's
  pre-call checks (LiteLLM's rate limit that needs no database).

Printed: added latency over the upstream alone (one client, sequential: the proxy's median
and p99 less the upstream's median), throughput and CPU per request of the server process
(and its children) at 16 and 64 clients, JSON; streamed, CPU per chunk (23 chunks a
stream) and throughput at 16 clients; peak RSS; then the ratios the targets are on. The
blocks of every measurement alternate between the servers (round after round), so that
the load of a shared machine falls on all alike; each ratio comes from one run. A server
that answers errors (Portkey's streams on Node 20 here) is shown with its status codes
instead of figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from benchmarks._harness import MODEL, STREAM_CHUNKS, Proc, free_port, request_body, role
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


def portkey_version(folder: str) -> str:
    package = Path(folder) / "node_modules" / "@portkey-ai" / "gateway" / "package.json"
    return json.loads(package.read_text())["version"]


def start_portkey(folder: str) -> tuple[Proc, str]:
    """Portkey's gateway as its README runs it from npm, headless (no console UI)."""
    script = Path(folder) / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    port = free_port()
    node = shutil.which("node") or "node"
    proc = Proc([node, str(script), f"--port={port}", "--headless"],
                env={"NODE_ENV": "production"}, stderr=True)  # fmt: skip
    proc.wait_for("Ready for connections", timeout=120)
    return proc, f"http://127.0.0.1:{port}"


class Server:
    """One server measured: its process, URL, the headers each request carries, and the
    share of a block it gets (LiteLLM answers ~50 requests a second: smaller blocks)."""

    def __init__(self, proc: Proc, url: str, headers: dict[str, str], share: float = 1.0):
        self.proc, self.url, self.headers, self.share = proc, url, headers, share
        self.totals: dict[str, dict[str, Any]] = {}

    def add(self, key: str, result: dict[str, Any], cpu: float) -> None:
        total = self.totals.setdefault(
            key, {"cpu": 0.0, "count": 0, "elapsed": 0.0, "errors": 0, "statuses": set(),
                  "medians": [], "p99s": []}
        )  # fmt: skip
        total["cpu"] += cpu
        total["count"] += result["count"]
        total["elapsed"] += result["elapsed"]
        total["errors"] += result["errors"]
        total["statuses"].update(result["statuses"])
        total["medians"].append(result["median_ms"])
        total["p99s"].append(result["p99_ms"])


def _block(load: Proc, server: Server, key: str, clients: int, requests: int, stream: bool):
    count = max(clients, int(requests * server.share))
    body = request_body(stream)
    command = {"url": server.url, "clients": clients, "requests": count, "body": body,
               "headers": server.headers}  # fmt: skip
    before = cpu_tree(server.proc.pid)
    result = load.ask(command)
    server.add(key, result, cpu_tree(server.proc.pid) - before)


#: (key, clients, requests per block, streamed); blocks alternate between the servers
PLAN = [
    ("sequential", 1, 100, False),
    ("json16", 16, 400, False),
    ("json64", 64, 400, False),
    ("stream16", 16, 100, True),
]


def run(litellm: str | None, portkey: str | None, rounds: int = 5) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            upstream_proc, upstream = start_role("upstream")
            procs.append(upstream_proc)
            servers["upstream alone"] = Server(upstream_proc, upstream, {})
            fast = ("--loop", "uvloop", "--http", "httptools")
            passthrough = start_role("passthrough", "--upstream", upstream + "/v1", *fast)
            procs.append(passthrough[0])
            servers["pass-through"] = Server(*passthrough, {})
            config = "plugins:\n" + PROVIDER.format(upstream=upstream, model=MODEL)
            plain = start_helixlab(config, Path(folder), "helixlab")  # serve's defaults
            procs.append(plain[0])
            servers["helixlab"] = Server(*plain, {})
            auth = start_helixlab(config + HELIXLAB.format(secret=SECRET), Path(folder), "auth")
            procs.append(auth[0])
            servers["helixlab + auth"] = Server(*auth, {"authorization": f"Bearer {token()}"})
            if portkey:
                pk = start_portkey(portkey)
                procs.append(pk[0])
                servers["Portkey"] = Server(
                    *pk,
                    {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream + "/v1",
                     "authorization": "Bearer upstream-needs-none"},
                )  # fmt: skip
            if litellm:
                lite = start_litellm(litellm, upstream, Path(folder))
                procs.append(lite[0])
                servers["LiteLLM"] = Server(
                    *lite, {"authorization": f"Bearer {MASTER_KEY}"}, share=0.1
                )
            load = Proc(role("load"))
            procs.append(load)
            for server in servers.values():  # warm up: connections, caches, lazy imports
                _block(load, server, "warm-up", 16, 300, False)
                _block(load, server, "warm-up", 16, 50, True)
            for round_ in range(rounds):
                for key, clients, requests, stream in PLAN:
                    for server in servers.values():
                        _block(load, server, key, clients, requests, stream)
                print(f"round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
            for server in servers.values():
                server.totals["peak_rss_mb"] = {"value": peak_rss_tree(server.proc.pid)}
        finally:
            for proc in procs:
                proc.stop()
    return servers


def figures(server: Server) -> dict[str, Any]:
    """What the table shows of one server (a mode with errors: its status codes)."""
    out: dict[str, Any] = {}
    seq = server.totals["sequential"]
    out["median_ms"] = statistics.median(seq["medians"])
    out["p99_ms"] = statistics.median(seq["p99s"])
    for key in ("json16", "json64", "stream16"):
        total = server.totals[key]
        if total["errors"]:
            out[key] = f"{total['errors']}/{total['count']} answered {sorted(total['statuses'])}"
            continue
        unit = STREAM_CHUNKS if key.startswith("stream") else 1
        out[key] = {
            "rps": total["count"] / total["elapsed"],
            "cpu_us": total["cpu"] / (total["count"] * unit) * 1e6,
        }
    out["peak_rss_mb"] = server.totals["peak_rss_mb"]["value"]
    return out


def report(servers: dict[str, Server], versions: dict[str, str]) -> str:
    data = {name: figures(server) for name, server in servers.items()}
    up = data.pop("upstream alone")
    upstream_median = up["median_ms"]
    names = list(data)

    def cell(name: str, key: str, field: str) -> str:
        value = data[name][key]
        return value if isinstance(value, str) else f"{value[field]:.0f}"

    lines = [
        f"# helixlab vs its peers, {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"upstream alone: median {up['median_ms']:.3f} ms, {up['json16']['rps']:.0f} req/s "
        f"at 16 clients, {up['json64']['rps']:.0f} at 64",
        "",
        "| measurement | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    rows = [
        ("added latency, median (ms)",
         [f"{data[n]['median_ms'] - up['median_ms']:.3f}" for n in names]),
        ("added latency, p99 (ms)", [f"{data[n]['p99_ms'] - up['median_ms']:.3f}" for n in names]),
        ("throughput, 16 clients (req/s)", [cell(n, "json16", "rps") for n in names]),
        ("throughput, 64 clients (req/s)", [cell(n, "json64", "rps") for n in names]),
        ("CPU per request, 16 clients (µs)", [cell(n, "json16", "cpu_us") for n in names]),
        ("CPU per request, 64 clients (µs)", [cell(n, "json64", "cpu_us") for n in names]),
        ("streamed throughput, 16 clients (req/s)", [cell(n, "stream16", "rps") for n in names]),
        ("streamed CPU per chunk, 16 clients (µs)",
         [cell(n, "stream16", "cpu_us") for n in names]),
        ("peak RSS (MiB)", [f"{data[n]['peak_rss_mb']:.0f}" for n in names]),
    ]  # fmt: skip
    for label, cells in rows:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio (same run) | value | target | met |", "|---|---|---|---|"]
    for label, value, target, met in ratios(data, upstream_median):
        shown = value if isinstance(value, str) else f"{value:.2f}x"
        lines.append(f"| {label} | {shown} | {target} | {met} |")
    return "\n".join(lines)


def ratios(data: dict[str, dict[str, Any]], up_ms: float) -> list[tuple[str, Any, str, str]]:
    """(label, ratio or why not, target, met) for the targets of issue 23."""
    out: list[tuple[str, Any, str, str]] = []

    def ratio(a: str, b: str, key: str, field: str) -> float | str:
        x, y = data.get(a, {}).get(key), data.get(b, {}).get(key)
        if x is None or y is None:
            return "not measured"
        if isinstance(x, str) or isinstance(y, str):
            return f"{a}: {x}" if isinstance(x, str) else f"{b}: {y}"
        return x[field] / y[field]

    def row(label: str, value: float | str, target: str, ok) -> None:
        met = "" if isinstance(value, str) or ok is None else ("yes" if ok(value) else "**no**")
        out.append((label, value, target, met))

    for clients in (16, 64):
        key = f"json{clients}"
        row(
            f"helixlab / Portkey, CPU per request, {clients} clients",
            ratio("helixlab", "Portkey", key, "cpu_us"),
            "<= 0.6x",
            lambda v: v <= 0.6,
        )
        row(
            f"helixlab / Portkey, throughput, {clients} clients",
            ratio("helixlab", "Portkey", key, "rps"),
            ">= 1.3x",
            lambda v: v >= 1.3,
        )
    row(
        "helixlab / Portkey, streamed CPU per chunk",
        ratio("helixlab", "Portkey", "stream16", "cpu_us"),
        "<= 0.6x",
        lambda v: v <= 0.6,
    )
    for clients in (16, 64):
        row(
            f"helixlab / pass-through (uvloop + httptools), CPU per request, {clients} clients",
            ratio("helixlab", "pass-through", f"json{clients}", "cpu_us"),
            "<= 1.3x",
            lambda v: v <= 1.3,
        )
    row(
        "helixlab / pass-through, streamed CPU per chunk",
        ratio("helixlab", "pass-through", "stream16", "cpu_us"),
        "",
        None,
    )
    for clients in (16, 64):
        row(
            f"LiteLLM / helixlab + auth, CPU per request, {clients} clients",
            ratio("LiteLLM", "helixlab + auth", f"json{clients}", "cpu_us"),
            "(kept)",
            None,
        )
        row(
            f"LiteLLM / helixlab + auth, throughput, {clients} clients",
            ratio("LiteLLM", "helixlab + auth", f"json{clients}", "rps"),
            "(kept)",
            None,
        )
    row(
        "LiteLLM / helixlab + auth, streamed CPU per chunk",
        ratio("LiteLLM", "helixlab + auth", "stream16", "cpu_us"),
        "(kept)",
        None,
    )
    if "LiteLLM" in data and "helixlab + auth" in data:
        lite, hx = data["LiteLLM"], data["helixlab + auth"]
        row(
            "LiteLLM / helixlab + auth, added median latency",
            (lite["median_ms"] - up_ms) / max(1e-9, hx["median_ms"] - up_ms),
            "(kept)",
            None,
        )
    return out  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.peers")
    parser.add_argument("--litellm", default=".venv-peers/bin/litellm")
    parser.add_argument("--portkey", default=".peers/portkey", help="Portkey's npm folder")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    litellm = args.litellm if Path(args.litellm).exists() else None
    portkey = args.portkey if (Path(args.portkey) / "node_modules").exists() else None
    versions = {"helixlab": helixlab_version()}
    if portkey:
        versions["Portkey gateway"] = portkey_version(portkey)
        versions["Node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip()
    if litellm:
        versions["LiteLLM"] = subprocess.run(
            [str(Path(litellm).parent / "python"), "-c",
             "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    for name, found in (("LiteLLM", litellm), ("Portkey", portkey)):
        if not found:
            print(f"{name} is not installed: not measured (make bench-peers installs it)",
                  file=sys.stderr)  # fmt: skip
    print(report(run(litellm, portkey, args.rounds), versions))
    return 0


def helixlab_version() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return head.stdout.strip() or "?"


if __name__ == "__main__":
    raise SystemExit(main())
