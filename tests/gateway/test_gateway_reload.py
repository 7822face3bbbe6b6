"""Atomic rebuild on reload: requests and streams in flight finish on the chain and the
instances they started with; old instances stop only after they drain; a broken plugin
makes the reload roll back; a client that hangs up releases its lease at once."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import httpx
import pytest

import helixlab as hx

from _gateway_support import Gate, header_plugin, provider_plugin
from _waiting import wait_until

TIMEOUTS = hx.Timeouts(init=2, start=2, stop=2, health=0.5, export_state=2, import_state=2, drain=3)


@pytest.fixture
def log() -> list:
    return []


@pytest.fixture
def kernel(log: list, make_kernel) -> hx.Kernel:
    return make_kernel(timeouts=TIMEOUTS)


def text_of(events: list[str]) -> str:
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def body(text: str = "hello", stream: bool = False) -> dict[str, Any]:
    return {
        "model": "fake-small",
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    }


def wait_for_event(kernel: hx.Kernel, kind: str, plugin: str) -> threading.Event:
    seen = threading.Event()
    kernel.subscribe(lambda e: seen.set() if (e.kind, e.plugin) == (kind, plugin) else None)
    return seen


def test_a_stream_finishes_on_the_instance_it_started_with(kernel: hx.Kernel, log: list) -> None:
    gate = Gate(kernel._thread.loop)
    kernel.register(provider_plugin(options={"gate": gate}, log=log))
    kernel.load_all()
    old = kernel.get("fake-provider").get_provider().instance
    server = kernel.serve()
    swapped = wait_for_event(kernel, "reloaded", "fake-provider")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("POST", "/v1/chat/completions", json=body("in flight", True)) as stream:
            lines = stream.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"

            reports: list[Any] = []
            reloader = threading.Thread(
                target=lambda: reports.append(kernel.reload("fake-provider"))
            )
            reloader.start()
            assert swapped.wait(5)
            new = kernel.get("fake-provider").get_provider().instance
            assert new != old
            # New requests already see the new instance; the old one is not stopped yet.
            fresh = http.post("/v1/chat/completions", json=body("after")).json()
            assert fresh["choices"][0]["message"]["content"] == f"[{new}] Echo: after"
            assert log == []

            gate.open()
            events = [line[6:] for line in lines if line.startswith("data: ")]
        reloader.join(5)
    assert events[-1] == "[DONE]"
    assert text_of(events) == f"[{old}] Echo: in flight"
    assert reports[0].ok and log == [("stop", "fake-provider", old)]


def test_a_client_hanging_up_releases_its_lease(kernel: hx.Kernel) -> None:
    gate = Gate(kernel._thread.loop)  # never opened: the stream would wait forever
    kernel.register(provider_plugin(options={"gate": gate}))
    kernel.load_all()
    provider = kernel.get("fake-provider").get_provider()
    server = kernel.serve()
    with (
        httpx.Client(base_url=server.url, timeout=10) as http,
        http.stream("POST", "/v1/chat/completions", json=body("bye", True)) as stream,
    ):
        next(line for line in stream.iter_lines() if line.startswith("data: "))
    # The connection is closed. The lease must not be held until the drain timeout (3 s).
    report = kernel.reload("fake-provider")
    assert report.ok
    assert report.timings["drain"] < 1.0
    assert not any("drain timed out" in e.detail for e in kernel.events())
    assert provider.closed_streams == 1  # the provider's stream was closed, not leaked


def test_reloading_a_middleware_swaps_the_chain(kernel: hx.Kernel) -> None:
    kernel.register(provider_plugin())
    kernel.register(header_plugin("tagger"))
    kernel.load_all()
    server = kernel.serve()
    before = httpx.get(server.url + "/v1/models").headers["x-mw-tagger"]
    kernel.reload("tagger")
    after = httpx.get(server.url + "/v1/models").headers["x-mw-tagger"]
    assert before != after


def test_a_broken_middleware_rolls_the_reload_back(kernel: hx.Kernel) -> None:
    kernel.register(provider_plugin())
    kernel.register(header_plugin("tagger"))
    kernel.load_all()
    server = kernel.serve()
    before = httpx.get(server.url + "/v1/models").headers["x-mw-tagger"]
    with pytest.raises(hx.ReloadError) as caught:
        kernel.configure("tagger", {"broken": True})
    assert caught.value.plugin == "tagger" and caught.value.phase == "get_middleware"
    assert "middleware misconfigured" in str(caught.value)
    assert caught.value.report.rolled_back
    response = httpx.get(server.url + "/v1/models")
    assert response.status_code == 200 and response.headers["x-mw-tagger"] == before


def test_serve_refuses_a_broken_chain_and_leaves_nothing_behind(kernel: hx.Kernel) -> None:
    kernel.register(header_plugin("bad", broken=True))
    kernel.load_all()
    with pytest.raises(hx.PluginError, match="middleware misconfigured"):
        kernel.serve()
    kernel.unload("bad")
    kernel.register(provider_plugin())
    kernel.load("fake-provider")
    with kernel.serve() as server:  # the failed attempt left no builder or server behind
        assert httpx.get(server.url + "/health").status_code == 200


def test_a_non_streamed_request_in_flight_keeps_its_provider(kernel: hx.Kernel, log: list) -> None:
    release = threading.Event()
    entered = threading.Event()
    kernel.register(provider_plugin(log=log))
    kernel.load_all()
    provider = kernel.get("fake-provider").get_provider()
    original = provider.complete

    async def slow_complete(request: Any) -> Any:
        import asyncio

        entered.set()
        await asyncio.to_thread(release.wait, 5)
        return await original(request)

    provider.complete = slow_complete
    server = kernel.serve()
    results: list[Any] = []
    caller = threading.Thread(
        target=lambda: results.append(
            httpx.post(server.url + "/v1/chat/completions", json=body("slow"), timeout=10)
        )
    )
    caller.start()
    assert entered.wait(5)
    swapped = wait_for_event(kernel, "reloaded", "fake-provider")
    reloader = threading.Thread(target=lambda: kernel.reload("fake-provider"))
    reloader.start()
    assert swapped.wait(5)
    assert log == []  # swapped, but the old instance still serves the request in flight
    release.set()
    caller.join(5)
    reloader.join(5)
    content = results[0].json()["choices"][0]["message"]["content"]
    assert content == f"[{provider.instance}] Echo: slow"
    assert log == [("stop", "fake-provider", provider.instance)]


def test_a_stream_still_open_at_the_drain_deadline_is_ended_with_an_error_event(
    log: list,
) -> None:
    """A client holding a stream that never ends does not hold the reload past the drain
    deadline: its stream ends with an error event in the OpenAI shape, and closes."""
    with hx.Kernel(timeouts=dataclasses.replace(TIMEOUTS, drain=0.5)) as kernel:
        gate = Gate(kernel._thread.loop)  # never opened: the upstream stalls mid-stream
        kernel.register(provider_plugin(options={"gate": gate}, log=log))
        kernel.load_all()
        old = kernel.get("fake-provider").get_provider().instance
        server = kernel.serve()
        with (
            httpx.Client(base_url=server.url, timeout=10) as http,
            http.stream("POST", "/v1/chat/completions", json=body("stalled", True)) as stream,
        ):
            lines = stream.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            report = kernel.reload("fake-provider")
            events = [line[6:] for line in lines if line.startswith("data: ")]
        assert report.ok and report.stopped == ["fake-provider"]
        assert any("drain timed out after 0.5s" in e.detail for e in kernel.events())
        assert log == [("stop", "fake-provider", old)]
        error = json.loads(events[-1])["error"]
        assert error["code"] == "reloaded" and "reloaded and stopped" in error["message"]
        # the next request is served by the new instance
        fresh = httpx.post(server.url + "/v1/chat/completions", json=body("after")).json()
        assert fresh["choices"][0]["message"]["content"].endswith("Echo: after")


def test_a_client_that_never_reads_its_stream_holds_a_reload_only_until_the_drain_deadline(
    log: list,
) -> None:
    """A client that sends a streamed request and then reads nothing: the gateway's writes
    block once the socket buffers are full. The reload still ends at the drain deadline,
    the old instance is stopped, and the gateway goes on serving others."""
    import socket

    with hx.Kernel(timeouts=dataclasses.replace(TIMEOUTS, drain=0.5)) as kernel:
        kernel.register(provider_plugin(log=log))
        kernel.load_all()
        old = kernel.get("fake-provider").get_provider().instance
        server = kernel.serve()
        started = wait_for_event(kernel, "reloaded", "fake-provider")
        payload = json.dumps(body("w " * 100_000, True)).encode()  # ~15 MB of events back
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as client:
            client.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b"content-type: application/json\r\n"
                + f"content-length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            wait_until(  # the request holds the generation
                lambda: kernel._pool.current.leases, 10, "the request started"
            )
            report = kernel.reload("fake-provider")  # which never drains: it is cut off
            assert started.is_set()
        assert report.ok and report.stopped == ["fake-provider"]
        assert any("drain timed out after 0.5s" in e.detail for e in kernel.events())
        assert log == [("stop", "fake-provider", old)]
        fresh = httpx.post(server.url + "/v1/chat/completions", json=body("after")).json()
        assert fresh["choices"][0]["message"]["content"].endswith("Echo: after")
