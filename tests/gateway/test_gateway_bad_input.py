"""Bad input to the gateway over real loopback HTTP: malformed JSON, wrong types, bodies
that are too big, unknown models, slow clients and clients that vanish mid-body or
mid-stream. Every refusal is an OpenAI-shaped 4xx (never a 500), nothing is logged as an
unexpected error, the server keeps serving, and a reload afterwards completes at once,
stopping the old instance: no request is left holding it.

``test_gateway.py`` has the first bad-request table (empty body, arrays, messages as a
string, wrong temperature/max_tokens types, no model) and the 413s; this adds the rest.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

import helixlab as hx

from _gateway_support import Gate, provider_plugin

TIMEOUTS = hx.Timeouts(init=2, start=2, stop=2, health=0.5, export_state=2, import_state=2, drain=3)
MESSAGES = [{"role": "user", "content": "x"}]


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "fake-small", "messages": MESSAGES, **fields}).encode()


@pytest.fixture
def log() -> list:
    return []


@pytest.fixture
def kernel(log: list, make_kernel) -> hx.Kernel:
    return make_kernel(timeouts=TIMEOUTS)


@pytest.fixture
def server(kernel: hx.Kernel, log: list, gate_options: dict) -> Iterator[Any]:
    kernel.register(provider_plugin(options=gate_options, log=log))
    assert kernel.load_all().ok
    with kernel.serve() as srv:  # the default 1 MiB limit
        yield srv


@pytest.fixture
def gate_options() -> dict:
    """The fake provider's shared options: a test may hold its streams with a Gate."""
    return {}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if all(r is not record for r in self.records):  # seen from two loggers: once
            self.records.append(record)


@pytest.fixture
def errors_logged() -> Iterator[list]:
    """ERROR records while serving (an unexpected exception: the gateway's, or uvicorn's
    "Exception in ASGI application"), and only those: never the INFO lines (uvicorn's
    "Started server process") that another test may have left audible."""
    handler = _Records()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]  # uvicorn may not propagate
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def post(server: Any, content: bytes, **headers: str) -> httpx.Response:
    headers = {"content-type": "application/json", **headers}
    return httpx.post(server.url + "/v1/chat/completions", content=content, headers=headers)


def openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].endswith(".")
    return error


def reload_is_prompt(kernel: hx.Kernel, log: list) -> None:
    """A reload now finishes without waiting for the drain timeout and stops the old one."""
    old = kernel.get("fake-provider").get_provider().instance
    report = kernel.reload("fake-provider")
    assert report.ok and report.timings["drain"] < 1.0
    assert not any("drain timed out" in e.detail for e in kernel.events())
    assert ("stop", "fake-provider", old) in log
    assert kernel.get("fake-provider").get_provider().instance != old


def still_serving(server: Any) -> None:
    response = post(server, body())
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].endswith("Echo: x")


def raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def http_head(length: int, path: str = "/v1/chat/completions") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def read_reply(sock: socket.socket) -> str:
    """One whole HTTP response with a Content-Length, read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
                 .split(b":")[1])  # fmt: skip
    while len(rest) < length:
        rest += sock.recv(65536)
    return (head + b"\r\n\r\n" + rest).decode()


def reset(sock: socket.socket) -> None:
    """Hang up abruptly (RST), as a killed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- malformed JSON and wrong types -----------------------------------------------------------

BAD = {
    "truncated": (b'{"model": "fake-small", "messages": [', None, "not valid JSON"),
    "not-utf8": (b'\xff\xfe{"model": 1}', None, "not valid JSON"),
    "nested-array": (b"[" * 100_000, None, "nested too deeply"),
    "nested-field": (
        body()[:-1] + b', "metadata": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        None,
        "nested too deeply",
    ),
    "huge-integer": (body()[:-1] + b', "max_tokens": ' + b"9" * 5000 + b"}", None, "digits"),
    "lone-surrogate": (
        b'{"model": "fake-small", "messages": [{"role": "user", "content": "\\ud800"}]}',
        None,
        "surrogate",
    ),
    "null": (b"null", None, "JSON object"),
    "model-number": (json.dumps({"model": 5, "messages": MESSAGES}).encode(), "model", "model"),
    "no-role": (
        json.dumps({"model": "fake-small", "messages": [{"content": "x"}]}).encode(),
        "messages",
        "role",
    ),
    "unknown-role": (
        json.dumps({"model": "fake-small", "messages": [{"role": "wizard"}]}).encode(),
        "messages",
        "role",
    ),
    "message-string": (
        json.dumps({"model": "fake-small", "messages": ["hi"]}).encode(),
        "messages",
        "JSON object",
    ),
    "no-messages": (json.dumps({"model": "fake-small", "messages": []}).encode(), "messages", "1"),
    "tools-string": (body(tools="calculator"), "tools", "array"),
    "tool-without-function": (body(tools=[{"type": "function"}]), "tools", "function"),
    "tool-calls-string": (
        json.dumps(
            {"model": "fake-small", "messages": [{"role": "assistant", "tool_calls": "x"}]}
        ).encode(),
        "messages",
        "tool_calls",
    ),
    "options-string": (body(helixlab="x"), "helixlab", "helixlab"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_or_mistyped_bodies_are_400_never_500(server, errors_logged, case):
    content, param, needle = BAD[case]
    error = openai_error(post(server, content), 400)
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]
    if param is not None:
        assert error["param"] == param
    assert errors_logged == []
    still_serving(server)


@pytest.mark.parametrize("stream", [False, True])
def test_an_unknown_model_is_404_with_the_choices_streamed_or_not(server, stream):
    response = post(
        server, json.dumps({"model": "nope", "messages": MESSAGES, "stream": stream}).encode()
    )
    error = openai_error(response, 404)
    assert error["param"] == "model" and "fake-small" in error["message"]
    assert response.headers["content-type"].startswith("application/json")  # not an SSE 200
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="-", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES, stream=stream)


def test_a_declared_huge_body_is_refused_before_it_is_sent(server, kernel, log):
    sock = raw_request(server.port, http_head(10**9))  # and not one byte of it
    try:
        reply = read_reply(sock)
    finally:
        sock.close()
    assert reply.startswith("HTTP/1.1 413 ")
    assert '"code":"request_too_large"' in reply.replace(" ", "")
    reload_is_prompt(kernel, log)


# -- slow clients and clients that leave ---------------------------------------------------


def test_a_slow_client_holds_no_instance_so_a_reload_does_not_wait_for_it(server, kernel, log):
    content = body()
    sock = raw_request(server.port, http_head(len(content)) + content[:10])
    try:
        # another client is served meanwhile; once it is, the slow request has been seen
        assert httpx.get(server.url + "/v1/models").status_code == 200
        reload_is_prompt(kernel, log)  # was: waited the whole drain, then stopped it anyway
        sock.sendall(content[10:])
        reply = read_reply(sock)
    finally:
        sock.close()
    assert reply.startswith("HTTP/1.1 200 ")  # served, by the new instance
    new = kernel.get("fake-provider").get_provider().instance
    assert f"[{new}] Echo: x" in reply


def test_a_client_leaving_mid_body_leaves_nothing_behind(server, kernel, log, errors_logged):
    content = body()
    sock = raw_request(server.port, http_head(len(content)) + content[:10])
    assert httpx.get(server.url + "/v1/models").status_code == 200
    reset(sock)
    reload_is_prompt(kernel, log)
    still_serving(server)
    assert errors_logged == []


def test_a_client_killed_mid_stream_releases_its_instance(
    server, kernel, log, gate_options, errors_logged
):
    gate = Gate(kernel._thread.loop)  # never opened: the stream waits after its first chunk
    gate_options["gate"] = gate
    provider = kernel.get("fake-provider").get_provider()
    content = body(stream=True)
    sock = raw_request(server.port, http_head(len(content)) + content)
    received = b""
    while b"data: " not in received:
        received += sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200 ")
    reset(sock)
    reload_is_prompt(kernel, log)
    assert provider.closed_streams == 1  # the provider's stream was closed, not left waiting
    gate_options.pop("gate")
    still_serving(server)
    assert errors_logged == []


def test_many_bad_requests_in_a_row_do_not_wear_the_gateway_down(server, kernel, log):
    with httpx.Client(base_url=server.url) as http:
        for case in BAD.values():
            for _ in range(3):
                response = http.post("/v1/chat/completions", content=case[0])
                assert response.status_code == 400
    reload_is_prompt(kernel, log)
    still_serving(server)
    assert kernel.health()["fake-provider"].healthy
