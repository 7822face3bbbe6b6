"""Zero-downtime reloads under load: the gateway keeps answering while plugins reload.

Run ``python benchmarks/bench_load.py``. Eight client threads send chat requests (half
of them streamed) to the gateway over loopback, with the built-in custom-logger,
request-logger and rate-limiter (a limit far above the load) in front of a small
in-process provider. The same load runs twice in one run: once quiet (the peer) and
once while the provider and the rate-limiter are hot reloaded back to back. Reported:
failed requests and incomplete streams (target: none), the reloads done, and the median
and p99 latency of the reloading run against the quiet one.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helixlab as hx
from helixlab.llm import ChatRequest, ChatResponse, ProviderCapabilities, StreamChunk

CLIENTS = 8
REQUESTS = 60  # per client
WORDS = ("zero", "downtime", "while", "reloading")


class _Provider:
    def __init__(self) -> None:
        self.stopped = False

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self.stopped:
            raise RuntimeError("used after stop")
        return ChatResponse(content=" ".join(WORDS), model=request.model)

    async def complete_stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        for word in WORDS:
            if self.stopped:
                raise RuntimeError("used after stop")
            yield StreamChunk(content=word + " ")
        yield StreamChunk(finish_reason="stop")

    async def health_check(self) -> None:
        return None

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(models=["bench-model"])


class BenchProvider(hx.ProviderPlugin):
    name = "bench-provider"

    def start(self, ctx: hx.Context) -> None:
        self.provider = _Provider()

    def stop(self, ctx: hx.Context) -> None:
        self.provider.stopped = True

    def get_provider(self) -> _Provider:
        return self.provider


CONFIG = """\
plugins:
  custom-logger:
    config: {output: memory}
  request-logger: {}
  rate-limiter:
    config: {requests_per_minute: 1000000, burst_size: 100000}
"""


def _client(url: str, n: int, offset: int, out: dict[str, Any]) -> None:
    body = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(n):
            start = time.perf_counter()
            try:
                if (i + offset) % 2:
                    with client.stream(
                        "POST", "/v1/chat/completions", json={**body, "stream": True}
                    ) as response:
                        text = "".join(response.iter_text())
                    ok = response.status_code == 200 and text.rstrip().endswith("data: [DONE]")
                    if not ok:
                        out["incomplete"] += 1
                else:
                    response = client.post("/v1/chat/completions", json=body)
                    ok = response.status_code == 200
                    if not ok:
                        out["failed"] += 1
            except httpx.HTTPError:
                out["failed"] += 1
                continue
            out["latencies"].append(time.perf_counter() - start)


def _load(kernel: hx.Kernel, url: str, reload: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"failed": 0, "incomplete": 0, "latencies": [], "reloads": 0}
    clients = [
        threading.Thread(target=_client, args=(url, REQUESTS, i, out)) for i in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    targets = ("bench-provider", "rate-limiter")
    while reload and any(t.is_alive() for t in clients):
        kernel.reload(targets[out["reloads"] % 2])
        out["reloads"] += 1
    for thread in clients:
        thread.join()
    return out


def run() -> list[dict[str, Any]]:
    kernel = hx.Kernel()
    try:
        kernel.apply_config(CONFIG)
        kernel.register(BenchProvider)
        kernel.load_all()
        server = kernel.serve()
        quiet = _load(kernel, server.url, reload=False)
        busy = _load(kernel, server.url, reload=True)
        server.stop()
    finally:
        kernel.close()

    def p99(values: list[float]) -> float:
        return statistics.quantiles(values, n=100)[98]

    total = CLIENTS * REQUESTS
    broken = busy["failed"] + busy["incomplete"]
    return [
        {
            "name": f"{total} requests while reloading ({busy['reloads']} reloads)",
            "failed": busy["failed"],
            "incomplete_streams": busy["incomplete"],
            "median_ms": statistics.median(busy["latencies"]) * 1e3,
            "p99_ms": p99(busy["latencies"]) * 1e3,
            "quiet_median_ms": statistics.median(quiet["latencies"]) * 1e3,
            "quiet_p99_ms": p99(quiet["latencies"]) * 1e3,
            "p99_vs_quiet": p99(busy["latencies"]) / p99(quiet["latencies"]),
            "target": "0 failed, 0 incomplete",
            "met": broken == 0 and quiet["failed"] + quiet["incomplete"] == 0,
        }
    ]


def main() -> int:
    for row in run():
        print(
            f"{row['name']}: failed {row['failed']}, incomplete streams "
            f"{row['incomplete_streams']}; median {row['median_ms']:.2f} ms (quiet "
            f"{row['quiet_median_ms']:.2f}), p99 {row['p99_ms']:.2f} ms (quiet "
            f"{row['quiet_p99_ms']:.2f}, {row['p99_vs_quiet']:.2f}x); "
            f"{'met' if row['met'] else 'MISSED'}"
        )
        return 0 if row["met"] else 1
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
