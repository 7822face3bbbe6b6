"""What the proxy benchmarks share: a fixed upstream, a minimal pass-through proxy, a load
generator, each in its own process, and the server process's CPU time and peak memory.

Every role runs as ``python -m benchmarks._harness ROLE ...`` so that the process measured
(a proxy) holds nothing but that proxy: the upstream's and the load generator's work are
never counted in it.

- ``upstream``: a fixed OpenAI-compatible reply on loopback, written as raw bytes by an
  asyncio protocol (no framework), so the upstream is never the bottleneck. A JSON reply,
  or a stream of ``STREAM_WORDS`` content chunks plus role, finish and usage chunks.
- ``passthrough``: the floor a proxy can reach in Python: a Starlette route forwarding the
  body to the upstream with one pooled ``httpx.AsyncClient``, under the same uvicorn
  (``--transport asyncio``: that client over custom-provider's transport), on asyncio + h11
  or, ``--loop uvloop --http httptools``, the fast server.
- ``load``: N keep-alive connections on raw sockets sending the same request as fast as
  answers come; commanded over stdin, one JSON line per run, answering one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
STREAM_WORDS = 20
#: Chunks a streamed reply has (role, words, finish, usage), [DONE] not counted.
STREAM_CHUNKS = STREAM_WORDS + 3


# -- the fixed upstream ----------------------------------------------------------------------


def _completion() -> bytes:
    reply = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "pong " * 8,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 8,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }
    return json.dumps(reply, separators=(",", ":")).encode()


def _stream_events() -> list[bytes]:
    base = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = {**base, "choices": [choice], **extra}
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": f"word{i} "}) for i in range(STREAM_WORDS)]
    events.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 9, "completion_tokens": STREAM_WORDS, "total_tokens": 29}
    events.append(
        b"data: "
        + json.dumps({**base, "choices": [], "usage": usage}, separators=(",", ":")).encode()
        + b"\n\n"
    )
    events.append(b"data: [DONE]\n\n")
    return events


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class _Upstream(asyncio.Protocol):
    completion = _completion()
    models = json.dumps(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
    ).encode()
    stream = b"".join(_http_chunk(event) for event in _stream_events()) + b"0\r\n\r\n"

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._answer(head.split(" ", 2)[1], body)

    def _answer(self, path: str, body: bytes) -> None:
        if path.endswith("/models"):
            self._send(b"application/json", self.models)
        elif b'"stream":true' in body.replace(b" ", b""):
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n" + self.stream
            )
        else:
            self._send(b"application/json", self.completion)

    def _send(self, kind: bytes, body: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: "
            + kind
            + b"\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


async def _serve_upstream(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, "127.0.0.1", port)
    print(f"listening http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


# -- the pass-through peer ------------------------------------------------------------------


def passthrough_app(upstream: str, transport: str = "httpx") -> Any:
    """The minimal pass-through: the body forwarded as is, the answer relayed as is.

    ``transport="asyncio"``: the same httpx client over custom-provider's transport
    (``plugins/_transport.AsyncioTransport``).
    """
    import httpx
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    if transport == "asyncio":
        from helixlab.plugins._transport import async_client

        client = async_client(base_url=upstream, timeout=30)
    else:
        client = httpx.AsyncClient(base_url=upstream, timeout=30)

    async def chat(request: Request) -> Response:
        body = await request.body()
        headers = {"content-type": "application/json"}
        if b'"stream":true' in body.replace(b" ", b""):
            sent = client.build_request("POST", "/chat/completions", content=body, headers=headers)
            answer = await client.send(sent, stream=True)
            return StreamingResponse(
                answer.aiter_raw(),
                status_code=answer.status_code,
                media_type="text/event-stream",
                background=BackgroundTask(answer.aclose),
            )
        answer = await client.post("/chat/completions", content=body, headers=headers)
        return Response(answer.content, answer.status_code, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _serve_passthrough(port: int, upstream: str, transport: str, loop: str, http: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        passthrough_app(upstream, transport),
        host="127.0.0.1",
        port=port,
        loop=loop,  # the gateway's server, either way: asyncio + h11 or uvloop + httptools
        http=http,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    print(f"listening http://127.0.0.1:{port}", flush=True)
    server.run()


# -- the load generator -----------------------------------------------------------------------


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _drive(url: str, clients: int, requests: int, body: bytes, headers: dict) -> dict:
    host, port = url.removeprefix("http://").split(":")
    path = "/v1/chat/completions"
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", "content-type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"content-length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors: list[int] = []
    left = requests

    async def client() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection(host, int(port))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while left > 0:
                left -= 1
                start = time.perf_counter()
                status = await _one(reader, writer, request)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    errors.append(status)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "count": len(latencies),
        "errors": len(errors),
        "statuses": sorted(set(errors)),
        "elapsed": elapsed,
        "rps": len(latencies) / elapsed,
        "median_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
    }


def _serve_load() -> None:
    """Read one JSON command per line, run it, answer one JSON line."""
    for line in sys.stdin:
        command = json.loads(line)
        result = asyncio.run(
            _drive(
                command["url"],
                command["clients"],
                command["requests"],
                command["body"].encode(),
                command.get("headers", {}),
            )
        )
        print(json.dumps(result), flush=True)


# -- processes, from the orchestrating side ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """A child process; ``wait_for`` reads its output until a line containing ``marker``."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None, stderr=False):
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr else subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.pid = self.proc.pid

    def wait_for(self, marker: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if marker in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return line
        self.stop()
        raise RuntimeError(f"{self.argv[:4]} did not say {marker!r}:\n{''.join(seen[-30:])}")

    def _drain(self) -> None:
        """Keep reading what the process prints (access logs), so it never blocks on it."""
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def role(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks._harness", name, *args]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far (its children not counted)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request_body(stream: bool) -> str:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a benchmark."},
            {"role": "user", "content": "ping"},
        ],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks._harness")
    parser.add_argument("role", choices=["upstream", "passthrough", "load"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--transport", choices=["httpx", "asyncio"], default="httpx")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--http", choices=["h11", "httptools"], default="h11")
    args = parser.parse_args(argv)
    if args.role == "upstream":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_upstream(args.port))
    elif args.role == "passthrough":
        _serve_passthrough(args.port, args.upstream, args.transport, args.loop, args.http)
    else:
        _serve_load()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
