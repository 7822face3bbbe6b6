"""Benchmark the gateway's added latency against a bare Starlette app, over loopback HTTP.

Run ``python benchmarks/bench_gateway.py``. Three servers answer the same route
(``POST /v1/chat/completions``) with the same JSON, each served by uvicorn (h11) on
loopback, all driven by one ``httpx.Client`` (keep-alive) with sequential requests:

- ``bare starlette``: a Starlette app with that one route, no middleware; it reads the
  body and returns a prebuilt response.
- ``gateway, no middleware``: the helixlab gateway in front of a trivial in-process
  provider (the same reply), so the core's own cost (lease, JSON parse and validation,
  routing, the reply's serialisation) shows on its own.
- ``gateway + 4 middleware``: the same with the built-in ``custom-logger``,
  ``request-logger``, ``custom-auth`` (a valid HS256 JWT on every request) and
  ``rate-limiter`` (a limit far above the load) — the chain the course builds.

Blocks of requests alternate between the servers so that drift (CPU frequency, other load)
hits all of them alike. Reported per server: median and p90 latency, throughput; for the
gateway rows, the median added over the bare app (target: under 1 ms; LiteLLM publishes
about 3 ms) and the throughput ratio to the bare app.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helixlab as hx
from helixlab._net import ReadyServer, bind_tcp, http_url
from helixlab.llm import ChatRequest, ChatResponse, ProviderCapabilities, StreamChunk, Usage

REQUESTS = 2000  # per server
BLOCK = 100
WARMUP = 200
TARGET_MS = 1.0
SECRET = "benchmark-secret-of-at-least-32-bytes!"
REPLY = ChatResponse(
    id="chatcmpl-bench",
    created=1_700_000_000,
    model="bench-model",
    content="pong",
    usage=Usage(prompt_tokens=1, completion_tokens=1),
)
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "ping"}]}
MIDDLEWARE_CONFIG = f"""\
plugins:
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


class _Provider:
    """The trivial provider: the same reply every time, no I/O."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return REPLY

    async def complete_stream(self, request: ChatRequest) -> Any:
        yield StreamChunk(content=REPLY.content)

    async def health_check(self) -> None:
        return None

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(models=("bench-model",))


class BenchProvider(hx.ProviderPlugin):
    name = "bench-provider"

    def get_provider(self) -> _Provider:
        return _Provider()


def _bare_app() -> Starlette:
    prebuilt = REPLY.to_openai()

    async def chat(request: Request) -> Response:
        await request.body()
        return JSONResponse(prebuilt)

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


class _ThreadServer:
    """uvicorn (h11) in a thread on a pre-bound loopback socket, ready when constructed."""

    def __init__(self, app: Any):
        self.sock = bind_tcp("127.0.0.1", 0)  # the gateway's own socket set-up, for fairness
        self.url = http_url("127.0.0.1", self.sock.getsockname()[1])
        config = uvicorn.Config(app, http="h11", lifespan="off", log_config=None, access_log=False)
        ready = threading.Event()
        self.server = ReadyServer(config, ready)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        ready.wait(10)
        if not self.server.started:
            raise RuntimeError("the bare Starlette server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _timed(client: httpx.Client, url: str, headers: dict[str, str], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.post(url, json=BODY, headers=headers)
        samples.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text}")
    return samples


def run(requests: int = REQUESTS) -> list[dict[str, Any]]:
    """Time the three servers; one row per server (see the module docstring).

    Rows have ``name``, ``median_ms``, ``p90_ms``, ``rps``; gateway rows also
    ``added_ms`` (median over the bare app's), ``throughput_ratio``, ``target``, ``met``.
    """
    token = jwt.encode(
        {"sub": "bench", "iss": "bench", "aud": "gateway", "exp": int(time.time()) + 3600},
        SECRET,
        algorithm="HS256",
    )
    bare = _ThreadServer(_bare_app())
    plain = hx.Kernel()
    chained = hx.Kernel.from_config(MIDDLEWARE_CONFIG)
    try:
        for kernel in (plain, chained):
            kernel.register(BenchProvider)
            report = kernel.load_all()
            if not report.ok:
                raise RuntimeError(f"benchmark plugins did not load:\n{report}")
        servers: list[tuple[str, str, dict[str, str]]] = [
            ("bare starlette", bare.url, {}),
            ("gateway, no middleware", plain.serve().url, {}),
            ("gateway + 4 middleware", chained.serve().url, {"authorization": f"Bearer {token}"}),
        ]
        samples: dict[str, list[float]] = {name: [] for name, _, _ in servers}
        with httpx.Client(timeout=10) as client:
            for _, url, headers in servers:
                _timed(client, url + "/v1/chat/completions", headers, WARMUP)
            for _ in range(max(1, requests // BLOCK)):
                for name, url, headers in servers:
                    samples[name] += _timed(client, url + "/v1/chat/completions", headers, BLOCK)
    finally:
        chained.close()
        plain.close()
        bare.stop()
    base = statistics.median(samples["bare starlette"])
    base_rps = len(samples["bare starlette"]) / sum(samples["bare starlette"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rps = len(values) / sum(values)
        row: dict[str, Any] = {
            "name": name,
            "median_ms": median * 1e3,
            "p90_ms": statistics.quantiles(values, n=10)[-1] * 1e3,
            "rps": rps,
        }
        if name != "bare starlette":
            row["added_ms"] = (median - base) * 1e3
            row["throughput_ratio"] = rps / base_rps
            row["target"] = f"added < {TARGET_MS:g} ms"
            row["met"] = row["added_ms"] < TARGET_MS
        rows.append(row)
    return rows


def _fmt(row: dict[str, Any], key: str, spec: str, suffix: str = "") -> str:
    return format(row[key], spec) + suffix if key in row else ""


def main(run_fn: Callable[[], list[dict[str, Any]]] = run) -> int:
    rows = run_fn()
    print(f"POST /v1/chat/completions over loopback, {REQUESTS} sequential requests per server")
    head = f"{'server':<26}{'median ms':>10}{'p90 ms':>9}{'req/s':>9}{'added ms':>10}{'ratio':>8}"
    print(head + "  met")
    for row in rows:
        met = {True: "yes", False: "NO"}.get(row.get("met"), "")
        print(
            f"{row['name']:<26}{row['median_ms']:>10.3f}{row['p90_ms']:>9.3f}{row['rps']:>9.0f}"
            f"{_fmt(row, 'added_ms', '>10.3f'):>10}{_fmt(row, 'throughput_ratio', '>7.2f', 'x'):>8}"
            f"  {met}"
        )
    print(
        f"target: median added latency < {TARGET_MS:g} ms per request (LiteLLM publishes ~3 ms); "
        "ratio = gateway throughput / bare throughput"
    )
    return 0 if all(row.get("met", True) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
