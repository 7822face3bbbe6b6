"""custom-provider's HTTP/1.1 client (``plugins/_transport``) against upstreams that
misbehave: each fault ends the request with httpx's own error, in bounded time, on both
loops, and the connection that saw it is never reused."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
import uvicorn

from helixlab.errors import UpstreamError
from helixlab.kernel import loop_factory
from helixlab.plugins import _network
from helixlab.plugins._transport import async_client

LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Upstream:
    """A raw HTTP/1.1 upstream on loopback; ``script(reader, writer, n)`` answers the n-th
    connection's requests as the test wants. Counts connections; closes every one it
    accepted when the test leaves (so that the server's own close never waits on them)."""

    def __init__(self, script: Handler, tls: ssl.SSLContext | None = None):
        self.script = script
        self.tls = tls
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            await self.script(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        return f"https://localhost:{port}" if self.tls else f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    chunked = False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"transfer-encoding":
            chunked = True
    if not chunked:
        return head + await reader.readexactly(length)
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return head + body


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while True:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()


def run(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(asyncio.wait_for(main(), 30))


async def ok_again(client: httpx.AsyncClient, url: str, upstream: Upstream, expected: int) -> None:
    """The next request succeeds, on connection number ``expected`` (a new one)."""
    assert (await client.get(url)).json() == {"ok": True}
    assert upstream.connections == expected


def then_ok(first: Callable[..., Awaitable[None]]) -> Handler:
    """The first connection runs ``first``; later ones answer normally."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await (first(reader, writer) if n == 1 else answer_ok(reader, writer, n))

    return script


# -- the faults ------------------------------------------------------------------------------


@LOOPS
@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial", id="length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", id="chunked"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-le", id="head"),
        pytest.param(b"", id="nothing"),
    ],
)
def test_an_upstream_that_closes_mid_answer_is_a_remote_protocol_error(loop, sent):
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(sent)
        await writer.drain()
        writer.close()  # a clean FIN: no more bytes are coming

    async def main() -> None:
        upstream = Upstream(then_ok(cut))
        async with upstream as url, async_client(base_url=url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/")
            await ok_again(client, "/", upstream, 2)

    run(loop, main)


@LOOPS
def test_an_upstream_that_resets_mid_body_is_an_error_and_the_stream_ends(loop):
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the client has the first chunk
        writer.transport.abort()  # RST

    async def main() -> None:
        upstream = Upstream(then_ok(reset))
        async with upstream as url, async_client(base_url=url) as client:
            got = b""
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                async with client.stream("GET", "/") as response:
                    async for part in response.aiter_raw():
                        got += part
            assert got == b"hello"
            await ok_again(client, "/", upstream, 2)

    run(loop, main)


@LOOPS
@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"hello world, this is not HTTP\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", id="bad-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk"
        ),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n", id="upgrade"),
    ],
)
def test_garbage_from_the_upstream_is_a_remote_protocol_error(loop, garbage):
    async def send_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(garbage)
        await writer.drain()
        await reader.read()  # holds the connection open: the client must close it

    async def main() -> None:
        upstream = Upstream(then_ok(send_garbage))
        async with upstream as url, async_client(base_url=url, timeout=5) as client:
            started = time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/")
            assert time.monotonic() - started < 4  # an error at once, not a timeout
            await ok_again(client, "/", upstream, 2)

    run(loop, main)


@LOOPS
def test_bytes_past_the_answer_are_not_taken_for_the_next_one(loop):
    """An upstream out of step (a second answer nobody asked for): the first answer is
    delivered, the connection is dropped, the next request gets its own answer."""

    async def too_much(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK + b"HTTP/1.1 500 Stale\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def main() -> None:
        upstream = Upstream(then_ok(too_much))
        async with upstream as url, async_client(base_url=url) as client:
            assert (await client.get("/")).json() == {"ok": True}
            await ok_again(client, "/", upstream, 2)

    run(loop, main)


@LOOPS
@pytest.mark.parametrize("where", ["before-the-head", "mid-body"])
def test_a_hung_upstream_is_a_read_timeout_in_bounded_time(loop, where):
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if where == "mid-body":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome")
            await writer.drain()
        await reader.read()  # until the client gives up and closes

    async def main() -> None:
        upstream = Upstream(then_ok(hang))
        async with upstream as url, async_client(base_url=url, timeout=0.2) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/")
            assert time.monotonic() - started < 5
            await ok_again(client, "/", upstream, 2)

    run(loop, main)


@LOOPS
def test_a_full_pool_is_a_pool_timeout_and_a_cancelled_request_frees_its_slot(loop):
    release = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            await release.wait()
            return  # closes: this connection is done
        writer.write(OK)
        await writer.drain()
        await answer_ok(reader, writer, n)

    async def main() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        timeout = httpx.Timeout(5, pool=0.2)
        upstream = Upstream(held)
        async with upstream as url, async_client(limits=limits, timeout=timeout) as client:
            first = asyncio.create_task(client.get(url))
            while upstream.connections < 1:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            with pytest.raises(httpx.PoolTimeout):
                await client.get(url)
            assert time.monotonic() - started < 4
            first.cancel()  # the request holding the only connection goes away
            with pytest.raises(asyncio.CancelledError):
                await first
            release.set()
            await ok_again(client, url, upstream, 2)

    run(loop, main)


@LOOPS
def test_requests_queued_at_the_limit_each_get_their_own_answer(loop):
    async def numbered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            request = await read_request(reader)
            body = request.split(b"\r\n\r\n", 1)[1]
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async def main() -> None:
        limits = httpx.Limits(max_connections=3, max_keepalive_connections=2)
        upstream = Upstream(numbered)
        async with upstream as url, async_client(limits=limits) as client:
            answers = await asyncio.gather(
                *(client.post(url, content=b"%d" % i) for i in range(40))
            )
            assert [a.content for a in answers] == [b"%d" % i for i in range(40)]
            assert upstream.connections <= 3 + 40 // 2  # kept alive, not one per request

    run(loop, main)


# -- framing ---------------------------------------------------------------------------------


@LOOPS
def test_a_streamed_answer_arrives_chunk_by_chunk_as_the_upstream_sends_it(loop):
    """Server-sent events over chunked encoding: each event reaches the client before the
    upstream sends the next (nothing is buffered to the end)."""
    seen = asyncio.Event()

    async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        for i in range(3):
            event = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await seen.wait()
            seen.clear()
        writer.write(b"0\r\n\r\n")
        await answer_ok(reader, writer, n)

    async def main() -> None:
        upstream = Upstream(sse)
        async with upstream as url, async_client(base_url=url) as client:
            async with client.stream("POST", "/", json={"stream": True}) as response:
                lines = []
                async for line in response.aiter_lines():
                    if line:
                        lines.append(line)
                        seen.set()
            assert lines == ["data: 0", "data: 1", "data: 2"]
            await ok_again(client, "/", upstream, 1)  # the same connection, kept

    run(loop, main)


@LOOPS
def test_a_body_that_ends_with_the_connection_is_whole_and_the_connection_not_reused(loop):
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def main() -> None:
        upstream = Upstream(then_ok(until_close))
        async with upstream as url, async_client(base_url=url) as client:
            assert (await client.get("/")).text == "all of it"
            await ok_again(client, "/", upstream, 2)

    run(loop, main)


@LOOPS
def test_connection_close_http_1_0_head_and_informational_answers(loop):
    answers = [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nhi",
        b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
    ]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            request = await read_request(reader)
            if request.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
            else:
                writer.write(answers[n - 1] if n <= len(answers) else OK)
            await writer.drain()

    async def main() -> None:
        upstream = Upstream(script)
        async with upstream as url, async_client(base_url=url) as client:
            for expected in (1, 2):  # closed after each: the next one opens a new connection
                response = await client.get("/")
                assert (response.text, upstream.connections) == ("hi", expected)
            response = await client.get("/")
            assert (response.status_code, response.text, response.headers.get("link")) == (
                200,
                "hi",
                None,
            )
            head = await client.head("/")
            assert (head.status_code, head.content, head.headers["content-length"]) == (
                200,
                b"",
                "1000",
            )
            assert (await client.get("/")).json() == {"ok": True}

    run(loop, main)


@LOOPS
def test_a_request_body_of_unknown_length_is_sent_chunked(loop):
    received: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        received.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()

    async def parts():
        yield b"hello "
        yield b""
        yield b"world"

    async def main() -> None:
        async with Upstream(echo) as url, async_client(base_url=url) as client:
            assert (await client.post("/", content=parts())).status_code == 200
        head, body = received[0].split(b"\r\n\r\n", 1)
        assert b"transfer-encoding: chunked" in head.lower() and body == b"hello world"

    run(loop, main)


@pytest.mark.parametrize(
    "headers",
    [{"x-evil": "a\r\nx-injected: 1"}, {"x-evil": "a\nb"}, {"bad name": "x"}, {"x": "a\0b"}],
)
def test_a_header_that_could_break_the_framing_is_refused_before_anything_is_sent(headers):
    async def main() -> None:
        upstream = Upstream(answer_ok)
        async with upstream as url, async_client(base_url=url) as client:
            with pytest.raises(httpx.LocalProtocolError, match=r"Illegal header (name|value)"):
                await client.get("/", headers=headers)
            assert upstream.connections == 0

    run("asyncio", main)


def test_an_unsupported_scheme_is_refused_naming_the_scheme_not_the_urls_password():
    """As httpx's own transport says it: the URL's credentials stay out of the error."""

    async def main() -> None:
        async with async_client() as client:
            with pytest.raises(httpx.UnsupportedProtocol, match="'ftp://'") as refused:
                await client.get("ftp://user:hunter2@example.invalid/x")
            assert "hunter2" not in str(refused.value)

    run("asyncio", main)


def test_an_idle_connection_past_its_keep_alive_expiry_is_closed_not_reused():
    async def main() -> None:
        limits = httpx.Limits(keepalive_expiry=0.05)
        upstream = Upstream(answer_ok)
        async with upstream as url, async_client(base_url=url, limits=limits) as client:
            await ok_again(client, "/", upstream, 1)
            await ok_again(client, "/", upstream, 1)
            await asyncio.sleep(0.2)
            await ok_again(client, "/", upstream, 2)
            assert len(client._transport.pool.connections) == 1  # the expired one closed

    run("asyncio", main)


@LOOPS
def test_a_head_that_never_ends_is_refused_at_its_limit(loop):
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        while not writer.is_closing():
            writer.write(b"x-filler: " + b"a" * 1000 + b"\r\n")
            await writer.drain()

    async def main() -> None:
        upstream = Upstream(then_ok(endless))
        async with upstream as url, async_client(base_url=url, timeout=10) as client:
            with pytest.raises(httpx.RemoteProtocolError, match="head is over"):
                await client.get("/")
            await ok_again(client, "/", upstream, 2)

    run(loop, main)


@LOOPS
def test_a_slow_reader_holds_about_the_high_water_mark_not_the_whole_answer(loop, monkeypatch):
    """Back-pressure: a connection stops reading from its socket while a megabyte waits to
    be read, so a stream relayed to a slow client never piles up in memory."""
    size = 16 * _network.HIGH_WATER
    peak = 0
    received = _network._Connection.data_received

    def recording(self: _network._Connection, data: bytes) -> None:
        nonlocal peak
        received(self, data)
        peak = max(peak, len(self.buffer))

    monkeypatch.setattr(_network._Connection, "data_received", recording)

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size)
        await writer.drain()
        await answer_ok(reader, writer, n)

    async def main() -> None:
        upstream = Upstream(big)
        async with upstream as url, async_client(base_url=url) as client:
            total = 0
            async with client.stream("GET", "/") as response:
                async for part in response.aiter_raw():
                    total += len(part)
                    await asyncio.sleep(0.001)  # a slow client downstream
            assert total == size
            assert peak <= 2 * _network.HIGH_WATER
            await ok_again(client, "/", upstream, 1)  # read to the end: kept

    run(loop, main)


@LOOPS
def test_a_burst_of_64_requests_after_another_reuses_the_connections_of_the_first(loop):
    async def main() -> None:
        upstream = Upstream(answer_ok)
        async with upstream as url, async_client(base_url=url) as client:
            for _ in range(5):
                answers = await asyncio.gather(*(client.get("/") for _ in range(64)))
                assert {a.status_code for a in answers} == {200}
            assert upstream.connections <= 64  # none closed for being idle, none reopened

    run(loop, main)


# -- custom-provider on this client ------------------------------------------------------------

COMPLETION = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}]}'
)


async def provider_answer(api_url: str) -> str:
    """One chat completion by custom-provider at ``api_url``: its text."""
    from helixlab.kernel import Context
    from helixlab.llm import ChatRequest, Message
    from helixlab.plugins._provider import CustomProvider, CustomProviderConfig

    plugin = CustomProvider()
    config = CustomProviderConfig(api_url=api_url, retry_count=0, models=["m"])
    ctx = Context("custom-provider", plugin.version, config, {})
    plugin.init(ctx, config)
    await plugin.start(ctx)
    try:
        request = ChatRequest(model="m", messages=[Message.user("ping")])
        return (await plugin.get_provider().complete(request)).content or ""
    finally:
        await plugin.stop(ctx)


@pytest.mark.parametrize("proxy", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", None])
def test_custom_provider_goes_through_a_proxy_from_the_environment_and_direct_without(
    monkeypatch, proxy
):
    """With a proxy in the environment the request reaches it in absolute form (httpx's
    own proxy transport: httpx ignores the environment once given a transport, so the
    fast lane is not taken then); without one, the upstream gets it directly."""
    targets: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            request = await read_request(reader)
            targets.append(request.split(b" ")[1])
            head = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
            )
            writer.write(head % len(COMPLETION) + COMPLETION)
            await writer.drain()

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    async def main() -> None:
        async with Upstream(record) as url:
            if proxy is None:
                assert await provider_answer(url + "/v1") == "pong"
                assert targets == [b"/v1/chat/completions"]
            else:
                monkeypatch.setenv(proxy, url)
                assert await provider_answer("http://upstream.test/v1") == "pong"
                assert targets == [b"http://upstream.test/v1/chat/completions"]

    run("asyncio", main)


@LOOPS
def test_a_failed_connect_frees_its_slot_for_the_request_waiting_on_it(loop):
    """At the limit, a request waits for a slot; a connect that fails gives its slot back
    at once, so the waiting request fails (or succeeds) on its own, not by pool timeout."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed

    async def main() -> None:
        limits = httpx.Limits(max_connections=1)
        async with async_client(limits=limits, timeout=httpx.Timeout(5, pool=3)) as client:
            started = time.monotonic()
            results = await asyncio.gather(
                *(client.get(f"http://127.0.0.1:{port}/") for _ in range(3)),
                return_exceptions=True,
            )
            assert [type(r) for r in results] == [httpx.ConnectError] * 3
            assert time.monotonic() - started < 2

    run(loop, main)


def test_the_fast_lane_sends_the_clients_headers_and_decodes_a_compressed_answer():
    """``Upstream.send`` skips httpx's client layer, not what the request carries: the
    client's headers (and httpx's defaults) go out, a gzip answer comes back decoded."""
    import gzip

    from helixlab.plugins._transport import Upstream as Lane

    seen: list[bytes] = []

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            seen.append((await read_request(reader)).lower())
            body = gzip.compress(b'{"ok":true}')
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n"
                % len(body)
                + body
            )
            await writer.drain()

    async def main() -> None:
        async with Upstream(gzipped) as url, Lane(headers={"User-Agent": "me/1"}) as lane:
            assert lane.transport is not None  # no proxy here: the lane is taken
            response = await lane.send(lane.request("POST", httpx.URL(url + "/c"), json={}))
            await response.aread()
            assert response.json() == {"ok": True}
            assert response.request.url.path == "/c"
        lines = seen[0].split(b"\r\n\r\n")[0].split(b"\r\n")
        assert {b"user-agent: me/1", b"content-length: 2", b"accept: */*"} <= set(lines)
        assert any(line.startswith(b"accept-encoding: gzip") for line in lines)

    run("asyncio", main)


@LOOPS
def test_an_upstream_that_stops_reading_is_a_write_timeout(loop):
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.Event().wait()  # never reads: the client's send buffer fills up

    async def main() -> None:
        upstream = Upstream(deaf)
        async with upstream as url, async_client(timeout=httpx.Timeout(5, write=0.3)) as client:
            started = time.monotonic()
            with pytest.raises(httpx.WriteTimeout):
                await client.post(url, content=b"x" * (64 << 20))
            assert time.monotonic() - started < 4

    run(loop, main)


@LOOPS
@pytest.mark.parametrize("whole", [True, False])
def test_a_reader_that_stops_early_keeps_the_connection_only_if_the_answer_had_ended(loop, whole):
    """An SSE reader stops at ``[DONE]``, before the body's last bytes are asked for: when
    the whole answer had arrived the connection goes back to the pool, otherwise (the
    upstream still sending) it is closed."""
    events = b"data: 1\n\ndata: [DONE]\n\n"
    rest = b"%x\r\n%s\r\n0\r\n\r\n" % (len(events), events)

    async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(rest if whole else rest[:12])  # all of it, or up to the first event
        await writer.drain()
        await answer_ok(reader, writer, 1)

    async def main() -> None:
        upstream = Upstream(then_ok(sse))
        async with upstream as url, async_client(base_url=url) as client:
            async with client.stream("GET", "/") as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        break  # what an SSE reader does at its first (or [DONE]) event
            await ok_again(client, "/", upstream, 1 if whole else 2)

    run(loop, main)


@LOOPS
def test_an_upstream_that_never_accepts_is_a_connect_timeout(loop):
    """A listening socket whose accept queue is full (nobody accepts): the SYN goes
    unanswered, so the connect timeout, not the read timeout, ends the request."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))

        async def main() -> None:
            timeout = httpx.Timeout(5, connect=0.3)
            async with async_client(timeout=timeout) as client:
                started = time.monotonic()
                with pytest.raises(httpx.ConnectTimeout):
                    await client.get(f"http://127.0.0.1:{port}/")
                assert time.monotonic() - started < 4

        try:
            run(loop, main)
        finally:
            for filler in fillers:
                filler.close()


# -- framing, whatever the read boundaries ---------------------------------------------------

# what the upstream answers first -> (status, body, the next request reuses the connection),
# or the RemoteProtocolError's words
ANSWERS: dict[str, tuple[str, bytes, tuple[int, bytes, bool] | str]] = {
    "length and chunked": (
        "GET",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        "can't be present",
    ),
    "negative length": (
        "GET",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\nhello",
        "Content-Length",
    ),
    "two lengths": (
        "GET",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 3\r\n\r\nhello",
        "Duplicate Content-Length",
    ),
    "huge length": (
        "GET",
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "overflow",
    ),
    "huge chunk": (
        "GET",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello",
        "overflow",
    ),
    "status 0": ("GET", b"HTTP/1.1 000 Zero\r\ncontent-length: 5\r\n\r\nhello", "status code 0"),
    "trailers": (
        "GET",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n",
        (200, b"hello", True),
    ),
    "1xx first": (
        "GET",
        b"HTTP/1.1 100 Continue\r\nx-early: 1\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        (200, b"hello", True),
    ),
    "204 with a body": (
        "GET",
        b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello",
        (204, b"", False),
    ),
    "304 with a body": ("GET", b"HTTP/1.1 304 Not Modified\r\n\r\nhello", (304, b"", False)),
    "HEAD with a body": (
        "HEAD",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        (200, b"", False),
    ),
    "a second answer past the length": (
        "GET",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-smuggled: 1\r\n\r\nEVIL!",
        (200, b"hello", False),
    ),
    "HTTP/1.0 keep-alive": (
        "GET",
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\nhello",
        (200, b"hello", True),
    ),
    "HTTP/1.0": (
        "GET",
        b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        (200, b"hello", False),
    ),
    "connection close": (
        "GET",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
        (200, b"hello", False),
    ),
}


@pytest.mark.parametrize("read_size", [1, 65536], ids=["byte-by-byte", "at-once"])
@pytest.mark.parametrize("case", list(ANSWERS))
def test_an_answer_means_the_same_however_its_bytes_are_split(monkeypatch, case, read_size):
    """The parser sees the answer one byte per read (every split point) or whole: same
    status, body and headers, trailers dropped, nothing of a second answer taken into the
    first (a response desync), an invalid answer refused; the connection is reused only
    after a clean end."""
    from helixlab.plugins import _transport

    monkeypatch.setattr(_transport, "READ_SIZE", read_size)
    method, sent, expected = ANSWERS[case]

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(sent)
        await writer.drain()
        await answer_ok(reader, writer, 1)

    async def main() -> None:
        upstream = Upstream(then_ok(first))
        async with upstream as url, async_client(base_url=url, timeout=5) as client:
            if isinstance(expected, str):
                with pytest.raises(httpx.RemoteProtocolError, match=expected):
                    await client.request(method, "/")
                await ok_again(client, "/", upstream, 2)
                return
            status, body, reused = expected
            response = await client.request(method, "/")
            assert (response.status_code, response.content) == (status, body)
            assert not {"x-t", "x-early", "x-smuggled"} & set(response.headers)
            await ok_again(client, "/", upstream, 1 if reused else 2)

    run("asyncio", main)


async def provider_error(api_url: str, stream: bool = False, **config: object) -> UpstreamError:
    """The UpstreamError custom-provider at ``api_url`` raises for one chat completion
    (retried with no backoff), non-streamed or streamed alike."""
    from helixlab.kernel import Context
    from helixlab.llm import ChatRequest, Message
    from helixlab.plugins._provider import CustomProvider, CustomProviderConfig

    plugin = CustomProvider()
    settings = CustomProviderConfig(api_url=api_url, retry_backoff=0, models=["m"], **config)
    ctx = Context("custom-provider", plugin.version, settings, {})
    plugin.init(ctx, settings)
    await plugin.start(ctx)
    try:
        request = ChatRequest(model="m", messages=[Message.user("ping")])
        provider = plugin.get_provider()
        with pytest.raises(UpstreamError) as info:
            if stream:
                async for _ in provider.complete_stream(request):
                    pass
            else:
                await provider.complete(request)
        return info.value
    finally:
        await plugin.stop(ctx)


@LOOPS
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", ["read-timeout", "cut-mid-body", "closed", "reset"])
def test_a_completion_that_may_have_reached_the_upstream_is_never_sent_twice(loop, fault, stream):
    """retry_count retries what never left; a POST the upstream has read (then hung,
    broke off its answer, closed or reset the connection) may be running there: the
    error surfaces after one attempt."""
    posts: list[bytes] = []

    async def fail(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        posts.append(await read_request(reader))
        if fault == "read-timeout":
            await reader.read()
        elif fault == "cut-mid-body":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
            await writer.drain()
        elif fault == "reset":
            writer.transport.abort()

    async def main() -> None:
        async with Upstream(fail) as url:
            error = await provider_error(url + "/v1", stream, retry_count=3, timeout=0.3)
        assert len(posts) == 1 and error.attempts == 1
        assert error.http_status == (504 if fault == "read-timeout" else 502)

    run(loop, main)


@LOOPS
def test_a_completion_that_never_left_is_retried(loop):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed

    async def main() -> None:
        error = await provider_error(f"http://127.0.0.1:{port}/v1", retry_count=2)
        assert error.attempts == 3 and "could not be reached" in str(error)

    run(loop, main)


@LOOPS
def test_a_closed_client_opens_no_connection_and_its_waiting_requests_are_not_cancelled(loop):
    """After ``aclose`` (a provider stopped by a reload while requests are queued or about
    to retry): a queued request gets RuntimeError (it was not cancelled), and a request
    sent later through the lane opens no connection that nobody would close."""
    from helixlab.plugins._transport import Upstream as Lane

    answer = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await answer.wait()
        writer.write(OK)
        await writer.drain()

    async def main() -> None:
        upstream = Upstream(slow)
        limits = httpx.Limits(max_connections=1)
        async with upstream as url:
            lane = Lane(limits=limits, timeout=5)
            first = asyncio.create_task(lane.send(lane.request("GET", httpx.URL(url))))
            queued = asyncio.create_task(lane.send(lane.request("GET", httpx.URL(url))))
            while not lane.transport.pool._waiters:
                await asyncio.sleep(0.01)
            await lane.aclose()
            with pytest.raises(RuntimeError, match="closed"):
                await queued
            answer.set()
            with pytest.raises(httpx.TransportError):  # its connection was closed under it
                await first
            with pytest.raises(RuntimeError, match="closed"):
                await lane.send(lane.request("GET", httpx.URL(url)))
            assert upstream.connections == 1 and lane.transport.pool.connections == []

    run(loop, main)


def test_credentials_in_the_url_are_basic_auth_on_the_lane_as_through_the_client():
    from helixlab.plugins._transport import Upstream as Lane

    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            head = (await read_request(reader)).split(b"\r\n\r\n")[0]
            seen.append(next(line for line in head.split(b"\r\n") if b"uthorization" in line))
            writer.write(OK)
            await writer.drain()

    async def main() -> None:
        async with Upstream(record) as url, Lane(headers={"Authorization": "Bearer k"}) as lane:
            with_user = httpx.URL(url.replace("http://", "http://user:pa%20ss@") + "/v1")
            await (await lane.send(lane.request("POST", with_user, json={}))).aread()
            await lane.client.post(with_user, json={})  # httpx's client, for comparison
            await (await lane.send(lane.request("POST", httpx.URL(url), json={}))).aread()
        basic = b"Authorization: Basic dXNlcjpwYSBzcw=="  # user:pa ss
        assert seen == [basic, basic, b"Authorization: Bearer k"]

    run("asyncio", main)


def test_at_the_limit_an_idle_connection_to_another_origin_makes_room():
    """Every slot held by idle connections to one upstream: a request to another closes
    the oldest of them rather than waiting for a pool timeout."""

    async def main() -> None:
        limits = httpx.Limits(max_connections=1)
        timeout = httpx.Timeout(5, pool=1)
        first, second = Upstream(answer_ok), Upstream(answer_ok)
        async with first as one, second as two, async_client(limits=limits, timeout=timeout) as c:
            for url in (one, two, one):
                assert (await c.get(url)).json() == {"ok": True}
            assert (first.connections, second.connections) == (2, 1)

    run("asyncio", main)


@LOOPS
def test_a_kept_alive_connection_closed_as_the_request_went_out_is_retried_only_if_idempotent(
    loop,
):
    """The keep-alive race: the upstream closes an idle connection just as a request goes
    out on it (its FIN not yet seen), reading the request but answering nothing. A GET is
    sent again on a new connection; a POST, which the upstream may have acted on, is not:
    it fails, and reached the upstream once."""
    posts = 0

    async def one_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        nonlocal posts
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        request = await read_request(reader)  # the next one on this connection: no answer
        posts += request.startswith(b"POST")

    async def main() -> None:
        upstream = Upstream(one_each)
        async with upstream as url, async_client(base_url=url) as client:
            await ok_again(client, "/", upstream, 1)
            await ok_again(client, "/", upstream, 2)  # on 1, closed unanswered; again on 2
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post("/", content=b"charge me once")
            assert (posts, upstream.connections) == (1, 2)

    run(loop, main)


def test_idle_connections_are_dropped_before_common_servers_drop_theirs():
    """uvicorn (vLLM's server), Node and Apache close a connection idle for 5 s: a client
    that keeps it as long sends a POST into that close (which it must not retry)."""
    from helixlab.plugins._transport import LIMITS

    assert LIMITS.keepalive_expiry is not None and LIMITS.keepalive_expiry < 5
    assert uvicorn.Config(app=None).timeout_keep_alive == 5  # the server this is about


def test_through_a_proxy_from_the_environment_idle_connections_are_dropped_as_early(
    monkeypatch,
):
    """httpx's own transports (taken with a proxy) get the same limits, not httpx's 5 s."""
    from helixlab.plugins._transport import LIMITS

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    client = async_client()
    pools = [transport._pool for transport in client._mounts.values() if transport is not None]
    assert pools and all(pool._keepalive_expiry == LIMITS.keepalive_expiry for pool in pools)


@LOOPS
def test_an_upstream_that_stops_mid_stream_is_a_timeout_not_a_close(loop):
    event = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    event += b'"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await reader.read()  # and nothing more, connection open

    async def main() -> None:
        async with Upstream(stall) as url:
            error = await provider_error(url + "/v1", True, retry_count=0, timeout=0.3)
        assert error.http_status == 504 and "stopped sending" in str(error)

    run(loop, main)


@LOOPS
@pytest.mark.parametrize("phase", ["connect", "write", "head", "mid-body", "pool"])
def test_a_request_cancelled_in_any_phase_is_cancelled_and_leaves_no_socket(loop, phase):
    """The task is cancelled (a client left the gateway) while its request connects,
    writes, waits for the head, reads the body or waits for a pool slot: CancelledError
    reaches it (never swallowed, never an httpx error), and once the client is closed the
    process holds no more file descriptors than before."""
    import os
    import socket

    def sockets() -> set[str]:  # the process's open sockets (uvloop adds a /dev/null)
        found = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                found.add(os.readlink(f"/proc/self/fd/{fd}"))
        return {link for link in found if link.startswith("socket:")}

    reached = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if phase == "write":
            reached.set()
            await asyncio.Event().wait()  # never reads: the client's writes back up
        await read_request(reader)
        if phase == "mid-body":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome")
            await writer.drain()
        reached.set()
        await reader.read()

    async def main() -> None:
        before = sockets()
        listener = socket.socket()  # accepts nothing: a connect to it never completes
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        upstream = Upstream(script)
        limits = httpx.Limits(max_connections=1)
        async with upstream as url:
            client = async_client(limits=limits, timeout=30)
            pool = client._transport.pool
            if phase == "connect":
                url = "http://{}:{}".format(*listener.getsockname())
                task = asyncio.create_task(client.get(url))
                while not pool.connecting:
                    await asyncio.sleep(0.01)
            elif phase == "pool":
                holder = asyncio.create_task(client.get(url))
                await reached.wait()
                task = asyncio.create_task(client.get(url))
                while not pool._waiters:
                    await asyncio.sleep(0.01)
            else:
                body = b"x" * (64 << 20) if phase == "write" else b""

                async def request() -> None:
                    async with client.stream("POST", url, content=body) as response:
                        await response.aread()

                task = asyncio.create_task(request())
                await reached.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.connecting == 0 and pool._waiters == collections.deque()
            if phase == "pool":
                holder.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await holder
            assert pool.connections == []  # nothing half-used kept
            await client.aclose()
        for sock in (listener, *fillers):
            sock.close()
        deadline = time.monotonic() + 5
        while sockets() - before and time.monotonic() < deadline:  # closed in loop turns
            await asyncio.sleep(0.01)
        assert not sockets() - before

    run(loop, main)


@LOOPS
def test_64_concurrent_requests_with_failing_connections_each_get_their_own_answer_or_an_error(
    loop,
):
    """Over 16 connections, some reset after reading a request, some answer with bytes past
    the answer, some answer garbage: every request ends with its own body or an httpx
    error, nothing of one answer reaches another, and the pool's books balance."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        answered = 0
        while True:
            body = (await read_request(reader)).split(b"\r\n\r\n", 1)[1]
            answered += 1
            if n % 3 == 0 and answered == 2:
                writer.transport.abort()
                return
            answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            if n % 5 == 0:
                answer += b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEVIL!"
            elif n % 7 == 0:
                answer = b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n" + body
            writer.write(answer)
            await writer.drain()

    async def main() -> None:
        limits = httpx.Limits(max_connections=16)
        upstream = Upstream(echo)
        async with upstream as url, async_client(limits=limits, timeout=10) as client:
            for _ in range(3):
                bodies = [b"request %d" % i for i in range(64)]
                results = await asyncio.gather(
                    *(client.post(url, content=body) for body in bodies), return_exceptions=True
                )
                for body, result in zip(bodies, results, strict=True):
                    if isinstance(result, BaseException):
                        assert isinstance(result, httpx.TransportError), result
                    else:
                        assert result.content == body
                assert any(not isinstance(result, BaseException) for result in results)
                pool = client._transport.pool
                assert (pool.connecting, len(pool._waiters)) == (0, 0)
                assert sorted(map(id, pool.connections)) == sorted(map(id, pool.idle))  # all idle
            assert upstream.connections > 16  # the faulty ones were replaced

    run(loop, main)


@LOOPS
def test_a_certificate_the_provider_does_not_trust_fails_at_once_not_after_retries(loop, tmp_path):
    """TLS verification is on by default: a self-signed upstream is refused, at the first
    attempt (retrying cannot make a certificate trusted), nothing sent."""
    from test_transport import _tls_contexts

    server_context, _ = _tls_contexts(tmp_path)
    requests: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        requests.append(await read_request(reader))

    async def main() -> None:
        async with Upstream(record, server_context) as url:
            error = await provider_error(url + "/v1", retry_count=3)
        assert error.attempts == 1 and "CERTIFICATE_VERIFY_FAILED" in str(error)
        assert requests == []

    run(loop, main)
