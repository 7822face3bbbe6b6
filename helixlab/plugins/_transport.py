"""custom-provider's transport: httpx as the API, a lean HTTP/1.1 client for the bytes.

Why: profiled under 64 concurrent clients (py-spy, ``helixlab serve`` on uvloop), httpcore
and h11 took 39% of the gateway's samples: httpcore's pool bookkeeping counts every
connection once per idle one, twice per request, and h11 parses in pure Python. Under
httpx's client (``httpx.AsyncClient(transport=...)``, a public seam) this module runs one
HTTP/1.1 exchange at a time per connection, parsed by httptools (llhttp, in C) as the bytes
arrive, and a pool that takes the most recently used idle connection in O(1): CPU per
request 1,184 -> 488 µs at 64 clients, same machine, same run (benchmarks/README.md).

The layers, each on a public interface: :class:`~._network.AsyncioBackend`, the bytes on
the running loop (an ``httpcore.AsyncNetworkBackend``, pinned by httpcore's major version);
``_Exchange``, one request (head and body in one write) and its response, framed by
Content-Length, chunked encoding or the end of the connection (anything else: garbage, a
body cut short, bytes past the answer, an upgrade, is an error and the connection is never
reused); ``_Pool``, at most ``max_connections`` open, ``max_keepalive_connections`` idle for
``keepalive_expiry`` s, a request waiting for a slot up to the pool timeout;
:class:`AsyncioTransport`, an ``httpx.AsyncBaseTransport`` with httpx's timeouts, exceptions
and ``Response``.

Retried here is only the keep-alive race: an idempotent request (GET, ...) on a reused
connection the upstream closed as it went out, answering nothing, goes again on the next
connection; a POST never (custom-provider retries what is safe, with backoff). HTTP/1.1
only. httpx honours proxies from the environment only with its own transports, so where
one is named (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``) :func:`async_client` gives
httpx's own client instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import httpcore
import httptools
import httpx

from .._net import shared_ssl_context
from ._network import AsyncioBackend, _Stream

__all__ = ["AsyncioBackend", "AsyncioTransport", "Upstream", "async_client"]


# -- HTTP/1.1 ------------------------------------------------------------------------------

#: As many connections kept idle as may be open: with httpx's default (20 of 100), a gateway
#: under 64 clients closed and reopened connections all the time, 6.6% of its CPU (py-spy).
#: Idle ones are dropped after 4 s, before the 5 s after which uvicorn (so vLLM), Node and
#: Apache close theirs: at httpx's 5 s a POST sent after 5 s idle met the server's close.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=4)
READ_SIZE = 65536
MAX_HEAD = 100 * 1024  # a response's status line and headers, at most (h11's limit too)
_NOT_TOKEN = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")  # header names (RFC 9110 tokens)
_NOT_FIELD = re.compile(rb"[\r\n\0]")  # the request target and header values
_Origin = tuple[bytes, bytes, int]
_CLOSED = "Cannot send a request, as the client has been closed."  # httpx's words


class _Refused(Exception):
    """What a parser callback raises to stop at a response httptools accepts but we do not."""


class _Connection11:
    """A pooled HTTP/1.1 connection: its stream, where it goes, since when it idles."""

    def __init__(self, stream: _Stream, origin: _Origin) -> None:
        self.stream = stream
        self.origin = origin
        self.idle_since = 0.0


class _Exchange:
    """One request and its response on a connection; httptools' callbacks fill it in."""

    def __init__(self, connection: _Connection11, head_only: bool) -> None:
        self.connection = connection
        self.head_only = head_only  # HEAD: no body follows the head, whatever it says
        self.parser = httptools.HttpResponseParser(self)
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_done = self.done = False
        self.framed = False  # Content-Length or Transfer-Encoding: the end is in the message
        self.reusable = False
        self.head_size = 0

    # -- httptools' callbacks: the final answer only (what a callback raises stops the parser)
    def on_message_begin(self) -> None:
        if self.head_done:  # bytes past the answer, in the same read: never part of it
            raise _Refused("bytes past the answer")

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:  # a trailer: dropped, as httpx's own transport does
            return
        self.headers.append((name, value))
        self.framed |= name.lower() in (b"content-length", b"transfer-encoding")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 100:
            raise _Refused(f"status code {status} is not an HTTP status")
        if status < 200:  # 1xx: informational, the answer follows
            self.reason, self.headers, self.framed = b"", [], False
            return
        self.head_done = True
        self.done = self.head_only

    def on_body(self, body: bytes) -> None:
        if not self.head_only:  # an answer to HEAD has no body, whatever it says
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.done = True
            self.reusable = not self.head_only and self.parser.should_keep_alive()

    # -- reading
    async def receive(self, timeout: float | None) -> None:
        """Feed the parser what arrives next (waiting up to ``timeout``)."""
        data = await self.connection.stream.read(READ_SIZE, timeout)
        if not data:
            self.reusable = False
            if self.head_done and not self.framed:  # the body ends with the connection
                self.done = True
                return
            if not self.head_done:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            )
        if not self.head_done:
            self.head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpx.RemoteProtocolError("the upstream switched protocols") from None
        except httptools.HttpParserError as exc:
            if not self.done:
                why = exc.__context__ if isinstance(exc.__context__, _Refused) else exc
                raise httpx.RemoteProtocolError(f"invalid HTTP/1.1 from upstream: {why}") from None
            self.reusable = False  # bytes past the answer: this connection is not in step
        if not self.head_done and self.head_size > MAX_HEAD:
            raise httpx.RemoteProtocolError(f"the upstream's head is over {MAX_HEAD} bytes")


def _request_bytes(request: httpx.Request, body: bytes) -> bytes:
    """The request's head and body, as they go on the wire."""
    raw = request.headers.raw
    target = request.url.raw_path
    method = request.method.encode("ascii", "replace")
    names = b"".join(name for name, _ in raw)
    if _NOT_TOKEN.search(method + names) or _NOT_FIELD.search(b"".join(v for _, v in raw) + target):
        raise httpx.LocalProtocolError(_illegal(method, target, raw))
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in raw]
    lines.append(b"\r\n")
    return b"\r\n".join(lines) + body


def _illegal(method: bytes, target: bytes, raw: list[tuple[bytes, bytes]]) -> str:
    """What could break the request's framing (h11's words; a value is named, not quoted)."""
    if _NOT_TOKEN.search(method):
        return "Illegal method characters"
    if _NOT_FIELD.search(target):
        return "Illegal target characters"
    for name, value in raw:
        if _NOT_TOKEN.search(name):
            return f"Illegal header name {name!r}"
        if _NOT_FIELD.search(value):
            return f"Illegal header value (header {name.decode('ascii')!r})"
    return "Illegal request"  # not reached


async def _request_body(request: httpx.Request) -> bytes:
    """The body joined, chunk-encoded when the length is not known."""
    parts = [part async for part in cast(httpx.AsyncByteStream, request.stream)]
    if "content-length" in request.headers or "transfer-encoding" not in request.headers:
        return b"".join(parts)
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in parts if part]
    return b"".join(chunks) + b"0\r\n\r\n"


class _Pool:
    """Open connections: at most ``max_connections``; the idle ones newest last."""

    def __init__(
        self, backend: httpcore.AsyncNetworkBackend, context: ssl.SSLContext, limits: httpx.Limits
    ) -> None:
        self.backend = backend
        self.context = context
        unbounded = 1 << 30
        self.max_connections = limits.max_connections or unbounded
        idle = limits.max_keepalive_connections
        self.max_idle = unbounded if idle is None else idle
        self.expiry = limits.keepalive_expiry
        self.connections: list[_Connection11] = []  # every open one, idle or busy
        self.idle: list[_Connection11] = []
        self.connecting = 0
        self.closed = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, origin: _Origin, timeouts: dict[str, Any]) -> _Connection11:
        pool_timeout = timeouts.get("pool")
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            if self.closed:
                raise RuntimeError(_CLOSED)
            connection = self._take_idle(origin)
            if connection is not None:
                return connection
            if len(self.connections) + self.connecting < self.max_connections:
                return await self._connect(origin, timeouts)
            if self.idle:  # all taken, some idle for another origin: the oldest makes room
                self._close(self.idle[0])
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await self._wait(left, pool_timeout)

    def _take_idle(self, origin: _Origin) -> _Connection11 | None:
        idle = self.idle
        if self.expiry is not None:
            stale = time.monotonic() - self.expiry
            while idle and idle[0].idle_since < stale:
                self._close(idle.pop(0))
        for at in range(len(idle) - 1, -1, -1):
            if idle[at].origin == origin:
                connection = idle.pop(at)
                if connection.stream.get_extra_info("is_readable"):  # closed while idle
                    self._close(connection)
                    continue
                return connection
        return None

    async def _connect(self, origin: _Origin, timeouts: dict[str, Any]) -> _Connection11:
        scheme, host, port = origin
        timeout = timeouts.get("connect")
        self.connecting += 1
        try:
            stream: Any = await self.backend.connect_tcp(
                host.decode("ascii"),
                port,
                timeout=timeout,
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
            if scheme == b"https":
                try:
                    stream = await stream.start_tls(
                        self.context, server_hostname=host.decode("ascii"), timeout=timeout
                    )
                except BaseException:
                    await stream.aclose()
                    raise
        except BaseException:
            self.connecting -= 1
            self._wake()  # a failed connect frees its slot for the next one waiting
            raise
        self.connecting -= 1
        connection = _Connection11(stream, origin)
        self.connections.append(connection)
        return connection

    async def _wait(self, timeout: float | None, pool_timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but leaving: the next one in line gets the turn
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(f"no connection free within {pool_timeout} s") from None
            raise

    def _wake(self) -> None:
        """A slot or an idle connection is free: the first request waiting tries again."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def release(self, connection: _Connection11, reusable: bool) -> None:
        if reusable and not self.closed and len(self.idle) < self.max_idle:
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            self._close(connection)
        self._wake()

    def _close(self, connection: _Connection11) -> None:
        with contextlib.suppress(ValueError):
            self.connections.remove(connection)
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)
        connection.stream.close()

    async def aclose(self) -> None:
        """Close every connection; a request waiting or sent later gets RuntimeError (it was
        not cancelled); one in flight ends with its connection."""
        self.closed = True
        for connection in list(self.connections):
            self._close(connection)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError(_CLOSED))


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's exceptions (from the network backend) as httpx's of the same name."""
    try:
        yield
    except (httpcore.NetworkError, httpcore.TimeoutException) as exc:
        kind = httpx.TimeoutException if isinstance(exc, httpcore.TimeoutException) else None
        raise getattr(httpx, type(exc).__name__, kind or httpx.NetworkError)(str(exc)) from exc


class _Body(httpx.AsyncByteStream):
    """A response body as it arrives. Its end, or its reader leaving, hands the connection
    back to the pool: kept when the whole answer arrived cleanly (read to the end or not:
    an SSE reader stops at ``[DONE]``), closed otherwise."""

    def __init__(self, pool: _Pool, exchange: _Exchange, timeout: float | None) -> None:
        self._home: _Pool | None = pool
        self._exchange = exchange
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        exchange = self._exchange
        try:
            while True:
                if exchange.body:
                    data = b"".join(exchange.body)
                    exchange.body.clear()
                    yield data
                if exchange.done:
                    break
                with _as_httpx_errors():
                    await exchange.receive(self._timeout)
        finally:
            self._release()

    async def aclose(self) -> None:
        self._release()

    def _release(self) -> None:
        pool, self._home, exchange = self._home, None, self._exchange
        if pool is not None:
            pool.release(exchange.connection, exchange.done and exchange.reusable)


_PORTS = {b"http": 80, b"https": 443}
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110 9.2.2


class AsyncioTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over :class:`AsyncioBackend` (see the module docstring);
    ``verify``, ``cert``, ``trust_env`` and ``limits`` as for ``httpx.AsyncHTTPTransport``."""

    def __init__(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        limits: httpx.Limits = LIMITS,
    ) -> None:
        context = (
            verify
            if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
        )
        self.pool = _Pool(AsyncioBackend(), context, limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in _PORTS:
            what = f"'{url.scheme}://'"  # httpx's words: never the URL's password
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol {what}.")
        timeouts = request.extensions.get("timeout", {})
        data = _request_bytes(request, await _request_body(request))
        pool = self.pool
        origin = (scheme, url.raw_host, url.port or _PORTS[scheme])
        read, write = timeouts.get("read"), timeouts.get("write")
        while True:
            with _as_httpx_errors():
                connection = await pool.acquire(origin, timeouts)
            reused = connection.idle_since > 0
            exchange = _Exchange(connection, head_only=request.method == "HEAD")
            try:
                with _as_httpx_errors():
                    await connection.stream.write(data, write)
                    while not exchange.head_done:
                        await exchange.receive(read)
                break
            except BaseException as exc:
                pool.release(connection, False)
                # the keep-alive race (the upstream closed the idle connection as the request
                # went out, answering nothing): an idempotent request goes on the next one
                lost = isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError))
                lost = lost and reused and not exchange.head_size
                if not (lost and request.method in _IDEMPOTENT):
                    raise
        return httpx.Response(
            status_code=exchange.parser.get_status_code(),
            headers=exchange.headers,
            stream=_Body(pool, exchange, read),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": exchange.reason},
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


def async_client(**options: Any) -> httpx.AsyncClient:
    """``httpx.AsyncClient(**options)`` whose requests go through :class:`AsyncioTransport`
    (TLS with the shared default context unless ``verify`` or ``cert`` is given), or
    httpx's own transports when the environment names a proxy: httpx honours
    ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` only then."""
    return _client(options)[0]


def _client(options: dict[str, Any]) -> tuple[httpx.AsyncClient, AsyncioTransport | None]:
    trust_env = options.get("trust_env", True)
    if options.get("verify") is None:
        options.pop("verify", None)
        if options.get("cert") is None:
            options["verify"] = shared_ssl_context(trust_env)
    options.setdefault("limits", LIMITS)  # through a proxy too: its idle expiry above all
    proxies = urllib.request.getproxies() if trust_env else {}
    if {"http", "https", "all"} & set(proxies):
        return httpx.AsyncClient(**options), None
    transport = AsyncioTransport(
        verify=options.pop("verify", True),
        cert=options.pop("cert", None),
        trust_env=trust_env,
        limits=options.pop("limits"),
    )
    return httpx.AsyncClient(transport=transport, **options), transport


class Upstream:
    """An :func:`async_client` and a fast lane past it, for a caller that builds complete
    requests itself (custom-provider): ``request(...)`` builds an ``httpx.Request`` with the
    client's headers and timeouts; ``send(request)`` hands it straight to the
    :class:`AsyncioTransport` (when the client has one: no proxy from the environment), else
    to ``client.send``. The lane skips the client's per-request work, which the caller does
    not use: URL merging, cookies, the auth and redirect flows (credentials in the URL are
    Basic auth all the same), event hooks and httpx's INFO log line, 130 of 490 µs of CPU
    per request through the gateway at 64 clients (A/B, one run, 2 cores). Either way the
    response comes back unread; read or close it."""

    def __init__(self, **options: Any) -> None:
        self.client, self.transport = _client(options)
        self._timeout = self.client.timeout.as_dict()

    def request(self, method: str, url: httpx.URL, **content: Any) -> httpx.Request:
        """``httpx.Request(method, url, **content)`` (``json=``, ``content=``) with the
        client's headers and timeouts; ``url`` is absolute."""
        extensions = {"timeout": self._timeout}
        request = httpx.Request(
            method, url, headers=self.client.headers, extensions=extensions, **content
        )
        if url.userinfo:  # as httpx's client does: credentials in the URL are Basic auth
            request = next(httpx.BasicAuth(url.username, url.password).sync_auth_flow(request))
        return request

    async def send(self, request: httpx.Request) -> httpx.Response:
        if self.transport is None:
            return await self.client.send(request, stream=True)
        response = await self.transport.handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Upstream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
