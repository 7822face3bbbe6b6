"""custom-provider's transport: httpx over an asyncio network backend. The same httpx
behaviour (pooling, keep-alive, timeouts, errors, TLS) at a fraction of the CPU."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from helixlab.plugins import _transport
from helixlab.plugins._transport import AsyncioBackend, AsyncioTransport, async_client

REPLY = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
)


class _Server:
    """A raw HTTP/1.1 server on loopback: counts connections and the chunks each request
    arrived in; ``close_after`` closes a connection after that many answers; ``stall``: a
    hung upstream, which never answers and holds the connection until the client leaves.

    Every test closes its client connections before the server: from Python 3.12.1 on,
    leaving ``async with server`` waits until every connection it accepted is closed."""

    def __init__(self, close_after: int | None = None, stall: bool = False):
        self.connections = 0
        self.reads: list[int] = []
        self.close_after = close_after
        self.stall = stall

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if self.stall:
                    await reader.read()  # until the client closes the connection
                writer.write(REPLY)
                await writer.drain()
                answered += 1
                if self.close_after is not None and answered >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _serve(handler: _Server, ssl_context: ssl.SSLContext | None = None):
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0, ssl=ssl_context)
    return server, server.sockets[0].getsockname()[1]


def test_the_providers_client_connects_through_the_asyncio_backend(monkeypatch):
    connected: list[int] = []
    connect = AsyncioBackend.connect_tcp

    async def counting(self, host, port, *args, **kwargs):
        connected.append(port)
        return await connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", counting)

    async def main() -> None:
        server, port = await _serve(_Server())
        async with server, async_client(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/")).json() == {"ok": True}
            assert (await client.get("/")).json() == {"ok": True}
        assert connected == [port]  # one pooled connection, through the backend

    asyncio.run(main())


def test_only_public_seams_of_httpx_and_httpcore_are_used():
    """No write into httpx's client or httpcore's pool: the transport is passed to
    ``httpx.AsyncClient(transport=...)``, the backend to ``AsyncConnectionPool(...)``."""
    source = Path(_transport.__file__).read_text()
    for private in ("._transport", "._mounts", "._network_backend", "._pool", "httpx._"):
        assert private not in source, private
    assert issubclass(AsyncioTransport, httpx.AsyncBaseTransport)


def test_keep_alive_reuses_one_connection_and_sends_each_request_in_one_write():
    async def main() -> None:
        handler = _Server()
        counted: list[int] = []
        original = handler.handle

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            transport = writer.transport
            protocol = transport.get_protocol()
            received = protocol.data_received

            def counting(data: bytes) -> None:
                counted.append(len(data))
                received(data)

            protocol.data_received = counting
            await original(reader, writer)

        handler.handle = handle
        server, port = await _serve(handler)
        async with server, async_client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(5):
                response = await client.post("/chat", json={"ping": 1})
                assert response.json() == {"ok": True}
        assert handler.connections == 1
        assert len(counted) == 5  # head and body together, once per request

    asyncio.run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_64_clients_in_flight_are_all_answered_through_the_pool(loop):
    """A gateway's many clients, one upstream: round after round of 64 concurrent requests
    through httpcore's pool (at most max_keepalive idle connections kept, the rest closed)."""
    from helixlab.kernel import loop_factory

    async def main() -> None:
        handler = _Server()
        server, port = await _serve(handler)
        async with server, async_client(base_url=f"http://127.0.0.1:{port}") as client:
            pool = client._transport.pool
            for _ in range(3):
                answers = await asyncio.gather(*(client.post("/c", json={}) for _ in range(64)))
                assert {a.status_code for a in answers} == {200}
            assert 1 <= len(pool.connections) <= 64

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(main())


def test_at_its_limit_the_pool_queues_requests_until_a_connection_is_free():
    async def main() -> None:
        handler = _Server()
        server, port = await _serve(handler)
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
        async with server, async_client(base_url=f"http://127.0.0.1:{port}", limits=limits) as c:
            answers = await asyncio.gather(*(c.post("/c", json={}) for _ in range(20)))
            assert {a.status_code for a in answers} == {200}
            assert handler.connections >= 1 and len(c._transport.pool.connections) <= 4
            await c.post("/c", json={})
            assert len(c._transport.pool.connections) <= 2  # idle ones past keep-alive closed

    asyncio.run(main())


def test_a_connection_the_server_closed_while_idle_is_not_reused():
    async def main() -> None:
        handler = _Server(close_after=1)
        server, port = await _serve(handler)
        async with server, async_client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):
                assert (await client.get("/")).status_code == 200
                await asyncio.sleep(0.05)  # the server's FIN arrives while the connection idles
        assert handler.connections == 3

    asyncio.run(main())


def test_errors_and_timeouts_are_httpxs_own():
    async def main() -> None:
        with socket_closed_port() as port:
            async with async_client() as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"http://127.0.0.1:{port}/")
        handler = _Server(stall=True)  # a hung upstream: the read timeout ends the request
        server, port = await _serve(handler)
        async with server, async_client(timeout=0.2) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"http://127.0.0.1:{port}/")
            assert time.monotonic() - started < 5
            with pytest.raises(httpx.ReadTimeout):  # and again, on a fresh connection
                await client.post(f"http://127.0.0.1:{port}/", json={})

    asyncio.run(main())


def test_a_connection_dropped_mid_body_is_a_read_error():
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            await writer.drain()
            writer.transport.abort()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, async_client() as client:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await client.get(f"http://127.0.0.1:{port}/")

    asyncio.run(main())


def test_https_goes_through_start_tls(tmp_path: Path):
    server_context, client_context = _tls_contexts(tmp_path)

    async def main() -> None:
        handler = _Server()
        server, port = await _serve(handler, server_context)
        async with server, async_client(verify=client_context) as client:
            response = await client.post(f"https://localhost:{port}/x", json={})
            assert response.json() == {"ok": True}
            response = await client.post(f"https://localhost:{port}/x", json={})
            assert response.http_version == "HTTP/1.1"
        assert handler.connections == 1
        async with async_client() as strict:  # the system's CAs do not know this one
            with pytest.raises(httpx.ConnectError):
                await strict.get(f"https://localhost:{port}/")

    asyncio.run(main())


def test_the_backend_speaks_httpcores_interface_directly():
    async def main() -> None:
        handler = _Server()
        server, port = await _serve(handler)
        async with server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            await stream.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", timeout=5)
            data = b""
            while not data.endswith(b"true}"):
                data += await stream.read(4096, timeout=5)
            assert data == REPLY
            assert stream.get_extra_info("is_readable") is False
            assert stream.get_extra_info("server_addr")[1] == port
            client_addr = stream.get_extra_info("client_addr")
            assert stream.get_extra_info("socket").getsockname() == client_addr
            assert stream.get_extra_info("ssl_object") is None  # plain TCP
            assert stream.get_extra_info("unknown") is None
            await stream.aclose()
            other = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            try:
                started = time.monotonic()
                with pytest.raises(httpcore.ReadTimeout):
                    await other.read(10, timeout=0.05)
                assert time.monotonic() - started < 5
            finally:
                await other.aclose()  # else the server's close waits for it (3.12.1+)

    asyncio.run(main())


# -- helpers -----------------------------------------------------------------------------------


class socket_closed_port:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        return None


def _tls_contexts(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway CA-less self-signed certificate for localhost: (server, client) contexts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client
