"""The gateway's own CPU cost per request, against the floor: a minimal pass-through proxy.

Run ``python benchmarks/bench_gateway.py``. Every server is its own process, in front of
the same fixed upstream on loopback (``_harness``: raw bytes, never the bottleneck),
driven by a load generator in another process (16 keep-alive connections):

- ``pass-through``: a few lines of Starlette forwarding the body to the upstream with a
  pooled ``httpx.AsyncClient`` and relaying the answer as is — what any Python proxy
  must at least do (parse HTTP twice, send and receive once each).
- ``pass-through, asyncio backend``: the same httpx client over the transport custom-provider
  uses (``plugins/_transport``: HTTP/1.1 by httptools on the asyncio backend), shown for
  information. custom-provider also skips httpx's client layer (``_transport.Upstream``),
  which this pass-through keeps.
- ``helixlab, custom-provider``: ``helixlab serve`` on a config with only custom-provider
  pointed at the upstream (the user's path: the real CLI, the built-in plugin, the request
  parsed and checked, the reply parsed and re-emitted with everything the upstream said).
- ``helixlab + 4 middlewares``: the same plus the course's custom-logger, request-logger,
  custom-auth (a valid HS256 JWT on every request) and rate-limiter (a limit far above
  the load).

Every server runs on both of uvicorn's stacks: h11 on asyncio, and httptools on uvloop
(``helixlab serve``'s default, ``--loop uvloop --http httptools``); each ratio is against
the pass-through on the same stack.

CPU per request is the server process's user + system time over the run (psutil),
divided by the requests it answered; streamed, divided by the chunks relayed as well.
Blocks alternate between the servers so drift hits all alike. Targets (issue 11): CPU per
request within 1.5x the pass-through's with custom-provider alone, within 2x with the four
middlewares; streaming likewise per chunk; issue 23: custom-provider alone within 1.3x
the pass-through on the fast stack.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jwt

from benchmarks._harness import (
    MODEL,
    STREAM_CHUNKS,
    Proc,
    cpu_seconds,
    free_port,
    request_body,
    role,
)

CLIENTS = 16
REQUESTS = 1500  # per server and mode, in blocks
BLOCK = 300
WARMUP = 200
TARGETS = {"helixlab, custom-provider": 1.5, "helixlab + 4 middlewares": 2.0}
#: uvicorn's two stacks, as (loop, http): what ``helixlab serve --loop --http`` takes
STACKS = {"h11/asyncio": ("asyncio", "h11"), "httptools/uvloop": ("uvloop", "httptools")}
FAST = "httptools/uvloop"
FAST_TARGET = 1.3  # issue 23: custom-provider on the fast server, against its pass-through
SECRET = "benchmark-secret-of-at-least-32-bytes!"

PROVIDER = """\
  custom-provider:
    config:
      api_url: {upstream}/v1
      retry_count: 0
      models: [{model}]
"""
MIDDLEWARES = f"""\
  custom-logger:
    priority: 40
    config: {{output: memory}}
  request-logger:
    priority: 30
  custom-auth:
    priority: 20
    config:
      secret: "{SECRET}"
      issuer: bench
      audience: gateway
  rate-limiter:
    priority: 10
    config: {{requests_per_minute: 100000000, burst_size: 1000000}}
"""


def token() -> str:
    claims = {"sub": "bench", "iss": "bench", "aud": "gateway", "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def start_helixlab(config: str, folder: Path, name: str, *flags: str) -> tuple[Proc, str]:
    """``helixlab serve`` on ``config`` (YAML text) in its own process; (process, URL)."""
    path = folder / f"{name}.yaml"
    path.write_text(config)
    argv = [sys.executable, "-m", "helixlab", "serve", str(path), "--port", "0", *flags]
    proc = Proc(argv)
    url = proc.wait_for("http://").strip()
    return proc, url


def start_role(name: str, *args: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(role(name, "--port", str(port), *args))
    proc.wait_for("listening")
    return proc, f"http://127.0.0.1:{port}"


def measure(
    servers: dict[str, tuple[Proc, str]],
    load: Proc,
    *,
    stream: bool,
    headers: dict[str, str],
    requests: int = REQUESTS,
    block: int = BLOCK,
    clients: int = CLIENTS,
) -> dict[str, dict[str, Any]]:
    """Blocks of ``block`` requests, alternating servers; CPU and throughput per server."""
    body = request_body(stream)
    totals = {name: {"cpu": 0.0, "requests": 0, "elapsed": 0.0, "errors": 0} for name in servers}
    for _, url in servers.values():  # warm up: connections, caches, lazy imports
        load.ask(
            {"url": url, "clients": clients, "requests": WARMUP, "body": body, "headers": headers}
        )
    for _ in range(max(1, requests // block)):
        for name, (proc, url) in servers.items():
            before = cpu_seconds(proc.pid)
            result = load.ask(
                {
                    "url": url,
                    "clients": clients,
                    "requests": block,
                    "body": body,
                    "headers": headers,
                }
            )
            total = totals[name]
            total["cpu"] += cpu_seconds(proc.pid) - before
            total["requests"] += result["count"]
            total["elapsed"] += result["elapsed"]
            total["errors"] += result["errors"]
            if result["errors"]:
                raise RuntimeError(f"{name} answered {result['statuses']} under load")
    return totals


def run(requests: int = REQUESTS) -> list[dict[str, Any]]:
    """One row per server and mode: CPU per request (and per chunk), throughput, ratio;
    every server on both stacks (h11/asyncio, httptools/uvloop), ratios within a stack."""
    rows: list[dict[str, Any]] = []
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            upstream_proc, upstream = start_role("upstream")
            procs.append(upstream_proc)
            servers: dict[str, tuple[Proc, str]] = {}
            provider = PROVIDER.format(upstream=upstream, model=MODEL)
            for stack, (loop, http) in STACKS.items():
                flags = ("--loop", loop, "--http", http)
                servers[f"pass-through, {stack}"] = start_role(
                    "passthrough", "--upstream", upstream + "/v1", *flags
                )
                servers[f"pass-through, asyncio backend, {stack}"] = start_role(
                    "passthrough", "--upstream", upstream + "/v1", "--transport", "asyncio", *flags
                )
                servers[f"helixlab, custom-provider, {stack}"] = start_helixlab(
                    "plugins:\n" + provider, Path(folder), f"plain-{loop}", *flags
                )
                servers[f"helixlab + 4 middlewares, {stack}"] = start_helixlab(
                    "plugins:\n" + provider + MIDDLEWARES, Path(folder), f"course-{loop}", *flags
                )
            procs += [proc for proc, _ in servers.values()]
            load = Proc(role("load"))
            procs.append(load)
            headers = {"authorization": f"Bearer {token()}"}
            for stream in (False, True):
                totals = measure(servers, load, stream=stream, headers=headers, requests=requests)
                rows += _rows(totals, stream)
        finally:
            for proc in procs:
                proc.stop()
    return rows


def _rows(totals: dict[str, dict[str, Any]], stream: bool) -> list[dict[str, Any]]:
    unit = STREAM_CHUNKS if stream else 1

    def per(name: str) -> float:
        return totals[name]["cpu"] / (totals[name]["requests"] * unit)

    rows = []
    for name, total in totals.items():
        stack = name.rpartition(", ")[2]
        kind = name.rpartition(", ")[0]
        mine = per(name)
        row: dict[str, Any] = {
            "name": f"{name}, {'streamed' if stream else 'JSON'}",
            "cpu_us_per_chunk" if stream else "cpu_us_per_request": mine * 1e6,
            "rps": total["requests"] / total["elapsed"],
            "vs_passthrough": mine / per(f"pass-through, {stack}"),
            "vs_asyncio_passthrough": mine / per(f"pass-through, asyncio backend, {stack}"),
        }
        target = TARGETS.get(kind)
        if stack == FAST and kind == "helixlab, custom-provider":
            target = FAST_TARGET  # issue 23: the fast server's floor, tighter
        if target is not None:
            row["target"] = f"CPU <= {target:g}x pass-through"
            row["met"] = row["vs_passthrough"] <= target
        rows.append(row)
    return rows


def main() -> int:
    rows = run()
    print(
        f"{CLIENTS} clients, {REQUESTS} requests per server and mode, one fixed upstream; "
        "CPU of the server process"
    )
    print(f"{'server':<58}{'CPU us':>10}{'req/s':>9}{'ratio':>8}{'ratio2':>8}  target")
    for row in rows:
        cpu = row.get("cpu_us_per_request", row.get("cpu_us_per_chunk"))
        met = {True: "met", False: "MISSED"}.get(row.get("met"), "")
        print(
            f"{row['name']:<58}{cpu:>10.1f}{row['rps']:>9.0f}{row['vs_passthrough']:>7.2f}x"
            f"{row['vs_asyncio_passthrough']:>7.2f}x  {row.get('target', '')} {met}"
        )
    print(f"streamed rows: CPU per chunk ({STREAM_CHUNKS} chunks per stream)")
    print(
        "ratio: vs the pass-through on the same stack; ratio2: vs the pass-through over the "
        "asyncio backend on the same stack"
    )
    return 0 if all(row.get("met", True) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
