"""custom-provider's transport: httpx as the API, httpcore's pool, asyncio for the bytes.

Why: profiled under 16 concurrent clients, half of the gateway's CPU per request went to
httpx's default network backend (anyio), not to HTTP: every request checks each pooled
connection for expiry, and each check asked anyio for *all* of the socket's attributes
(``getpeername`` and a ``poll`` system call per connection); every read and write opened
a cancel scope. This backend speaks to the loop directly: one ``asyncio.Protocol`` per
connection whose buffer says at once whether an idle connection was closed, reads and
writes bounded by ``asyncio.timeout``, a request's head and body sent in one system
call instead of two, TLS by ``loop.start_tls``. httpx's client,
httpcore's pool, HTTP/1.1 parsing, timeouts and exceptions (``httpx.ConnectError``,
``ReadTimeout``, ...) stay exactly as they were.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore
import httpx

from .._net import shared_ssl_context

__all__ = ["AsyncioBackend", "async_client"]


class _Connection(asyncio.Protocol):
    """One connection's bytes: a buffer, an end-of-stream flag, and who waits for either."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter, self._reader = self._reader, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_readable(self) -> None:
        self._reader = asyncio.get_running_loop().create_future()
        await self._reader

    async def wait_writable(self) -> None:
        if self._writable is not None:
            await asyncio.shield(self._writable)


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, connection: _Connection) -> None:
        self._conn = connection
        self._pending: list[bytes] = []

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            transport = self._conn.transport
            if transport is not None and not transport.is_closing():
                transport.write(data)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        conn = self._conn
        self._flush()
        if not conn.buffer and not conn.eof:
            try:
                async with asyncio.timeout(timeout):
                    while not conn.buffer and not conn.eof:
                        await conn.wait_readable()
            except TimeoutError:
                raise httpcore.ReadTimeout(f"no data within {timeout} s") from None
        if conn.buffer:
            data = bytes(conn.buffer[:max_bytes])
            del conn.buffer[:max_bytes]
            return data
        if conn.error is not None:
            raise httpcore.ReadError(str(conn.error) or type(conn.error).__name__)
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Queue ``buffer``; what is queued in one turn of the loop (a request's head and
        its body) leaves in one system call, at the end of that turn or before a read."""
        if not buffer:
            return
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._pending.append(buffer)
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        if self._conn._writable is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._conn.wait_writable()
            except TimeoutError:
                raise httpcore.WriteTimeout(f"could not write within {timeout} s") from None

    async def aclose(self) -> None:
        self._flush()
        if self._conn.transport is not None:
            self._conn.transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        conn = self._conn
        assert conn.transport is not None
        self._flush()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    conn.transport, conn, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            conn.transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake took over {timeout} s") from None
        except (OSError, ssl.SSLError) as exc:
            conn.transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        conn.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass
        return self

    def get_extra_info(self, info: str) -> Any:
        conn = self._conn
        if info == "is_readable":  # an idle connection with bytes or EOF: the server left
            return bool(conn.buffer) or conn.eof
        transport = conn.transport
        if transport is None:
            return None
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on the running asyncio loop (see the module docstring)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        connect = asyncio.get_running_loop().create_connection(
            _Connection, host, port, local_addr=local
        )
        return await _connected(connect, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        connect = asyncio.get_running_loop().create_unix_connection(_Connection, path)
        return await _connected(connect, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connected(
    connect: Any, timeout: float | None, socket_options: Iterable[Any] | None
) -> _Stream:
    try:
        async with asyncio.timeout(timeout):
            transport, connection = await connect
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"could not connect within {timeout} s") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    sock: socket.socket | None = transport.get_extra_info("socket")
    for option in socket_options or ():
        if sock is not None:
            sock.setsockopt(*option)
    return _Stream(connection)


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool with its bookkeeping linear in the connections, not quadratic.

    httpcore 1.0 runs ``_assign_requests_to_connections`` twice per request; for each
    idle connection its first loop builds a list of every connection only to count them:
    with 64 clients in flight, thousands of ``is_idle()`` calls per request, a fifth of
    the gateway's CPU (py-spy). The same method, the count taken with ``len``: what it
    decides is unchanged.
    """

    def _assign_requests_to_connections(self) -> list[Any]:
        closing: list[Any] = []
        connections = self._connections
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif connection.has_expired() or (
                connection.is_idle() and len(connections) > self._max_keepalive_connections
            ):
                connections.remove(connection)
                closing.append(connection)
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            available = next(
                (c for c in connections if c.can_handle_request(origin) and c.is_available()),
                None,
            )
            if available is not None:
                pool_request.assign_to_connection(available)
                continue
            if len(connections) >= self._max_connections:
                idle = next((c for c in connections if c.is_idle()), None)
                if idle is None:
                    continue  # stays queued until a connection is free
                connections.remove(idle)
                closing.append(idle)
            connection = self.create_connection(origin)
            connections.append(connection)
            pool_request.assign_to_connection(connection)
        return closing


#: _Pool rewrites a private method of httpcore 1.0's pool: only under that version.
_LINEAR_POOL = httpcore.__version__.startswith("1.0.")


def async_client(**options: Any) -> httpx.AsyncClient:
    """``httpx.AsyncClient(**options)`` (proxies from the environment included) whose
    connection pools connect through :class:`AsyncioBackend`; TLS with the shared default
    context unless ``verify`` or ``cert`` is given."""
    if "verify" not in options and "cert" not in options:
        options["verify"] = shared_ssl_context(options.get("trust_env", True))
    client = httpx.AsyncClient(**options)
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if isinstance(pool, httpcore.AsyncConnectionPool):
            pool._network_backend = AsyncioBackend()
            if _LINEAR_POOL and type(pool) is httpcore.AsyncConnectionPool:
                pool.__class__ = _Pool  # the same state, linear bookkeeping
    return client
