"""A bounded load test: concurrent chat requests, streamed and not, while the provider and
each middleware plugin are hot reloaded over and over. Zero failures, every stream
complete, and no request ever touches an instance that was already stopped (the test
plugins raise if they are used after ``stop``)."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx
import pytest

import helixlab as hx

from _gateway_support import header_plugin, provider_plugin

WORKERS = 8
PER_WORKER = 24
MIDDLEWARE = ("mw-a", "mw-b", "mw-c")
WORDS = " ".join(f"w{i}" for i in range(30))
TIMEOUTS = hx.Timeouts(init=2, start=2, stop=2, health=1, export_state=2, import_state=2, drain=10)


@pytest.fixture
def kernel(make_kernel) -> hx.Kernel:
    k = make_kernel(timeouts=TIMEOUTS)
    k.register(provider_plugin())
    for i, name in enumerate(MIDDLEWARE):
        k.register(header_plugin(name, priority=10 - i))
    assert k.load_all().ok
    return k


def one_request(http: httpx.Client, worker: int, n: int) -> str | None:
    """None if the request fully succeeded, else what was wrong."""
    text = f"worker {worker} request {n} {WORDS}"
    stream = n % 2 == 0
    body = {"model": "fake-small", "messages": [{"role": "user", "content": text}]}
    expected = re.compile(r"\[(\d+)\] Echo: " + re.escape(text))
    if not stream:
        response = http.post("/v1/chat/completions", json=body)
        if response.status_code != 200:
            return f"{response.status_code}: {response.text}"
        content = response.json()["choices"][0]["message"]["content"]
        headers = response.headers
    else:
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            if r.status_code != 200:
                return f"{r.status_code}: {r.read().decode()}"
            events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
            headers = r.headers
        if not events or events[-1] != "[DONE]":
            return f"stream incomplete: {events[-2:]}"
        chunks = [json.loads(e) for e in events[:-1]]
        content = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
    if not expected.fullmatch(content):
        return f"wrong content: {content!r}"
    if headers.get("x-chain") != ",".join(MIDDLEWARE):
        return f"wrong chain: {headers.get('x-chain')!r}"
    return None


def test_concurrent_requests_survive_repeated_hot_reloads(kernel: hx.Kernel) -> None:
    server = kernel.serve()
    failures: list[str] = []
    done = threading.Event()
    reports: list[Any] = []

    def worker(index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=20) as http:
            for n in range(PER_WORKER):
                try:
                    problem = one_request(http, index, n)
                except Exception as exc:  # a dropped connection is a failure too
                    problem = f"{type(exc).__name__}: {exc}"
                if problem:
                    failures.append(f"worker {index} request {n}: {problem}")

    def reloader() -> None:
        targets = ("fake-provider", *MIDDLEWARE)
        i = 0
        while not done.is_set() and i < 400:
            reports.append(kernel.reload(targets[i % len(targets)]))
            i += 1

    started = time.perf_counter()
    reload_thread = threading.Thread(target=reloader)
    reload_thread.start()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    done.set()
    reload_thread.join(30)
    elapsed = time.perf_counter() - started

    assert failures == []
    assert all(report.ok for report in reports)
    assert len(reports) >= 2 * (1 + len(MIDDLEWARE))  # every plugin reloaded, more than once
    assert all(kernel.reload_count(name) >= 2 for name in ("fake-provider", *MIDDLEWARE))
    assert elapsed < 30
    assert not any("drain timed out" in e.detail for e in kernel.events())
