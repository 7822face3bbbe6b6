"""What the servers helixlab runs (the gateway, the embedded upstream) have in common:
a bound socket, a uvicorn that says when it listens, and their URL; and the one TLS
context every httpx client helixlab makes shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from typing import Protocol

import httpx
import uvicorn

__all__ = [
    "HTTP_PARSERS",
    "ReadyServer",
    "bind_tcp",
    "http_parser",
    "http_url",
    "shared_ssl_context",
]

#: What ``serve(http=...)`` and ``helixlab serve --http`` accept.
HTTP_PARSERS = ("auto", "h11", "httptools")


class _Settable(Protocol):
    def set(self) -> None: ...


class ReadyServer(uvicorn.Server):
    """A uvicorn server that sets ``ready`` once it listens, or gave up: nobody polls.

    ``ready`` is a threading.Event (server in its own thread) or an asyncio.Event (server
    on the caller's loop); ``started`` then tells which of the two happened.
    """

    def __init__(self, config: uvicorn.Config, ready: _Settable):
        self._exit: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        super().__init__(config)
        self.ready = ready

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Set from any thread (a ``stop()``, a signal handler), it ends ``main_loop`` at once."""
        self._should_exit = value
        if value and self._exit is not None:
            loop, event = self._exit
            with contextlib.suppress(RuntimeError):  # the loop is closed: it has ended anyway
                loop.call_soon_threadsafe(event.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()

    async def main_loop(self) -> None:
        """uvicorn's, ticking every 0.1 s as it does, but woken by ``should_exit``: a stop
        no longer waits for the next tick (up to 100 ms, each time a lab check's private
        gateway or embedded upstream stops, several times per check run)."""
        event = asyncio.Event()
        self._exit = (asyncio.get_running_loop(), event)
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 0.1)
            should_exit = await self.on_tick(counter)


def http_parser(kind: str = "auto") -> str:
    """The HTTP/1.1 implementation uvicorn runs for ``kind``: ``"httptools"`` (C, llhttp),
    ``"h11"`` (pure Python), or ``"auto"``: httptools when it can be imported, as uvicorn
    itself does. Asking for httptools without it installed raises."""
    if kind not in HTTP_PARSERS:
        raise ValueError(f"http={kind!r}: choose one of {', '.join(HTTP_PARSERS)}.")
    if kind == "h11":
        return kind
    try:
        import httptools  # noqa: F401
    except ImportError:
        if kind == "httptools":
            raise ValueError(
                "http='httptools' needs the httptools package, which is not installed here "
                "(pip install httptools); use http='h11'."
            ) from None
        return "h11"
    return "httptools"


def http_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 host bracketed."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_tcp(host: str, port: int) -> socket.socket:
    """A bound TCP socket, so that port 0 is resolved and the URL known before serving.

    ``proto=IPPROTO_TCP``, not 0: asyncio sets TCP_NODELAY on accepted connections only
    when the socket says it is TCP; without it, Nagle plus delayed ACKs add ~40 ms to
    every keep-alive request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@functools.cache
def shared_ssl_context(trust_env: bool = True) -> ssl.SSLContext:
    """httpx's default TLS context, built once per process: pass it as ``verify=``.

    Why: httpx builds a new one for every client, loading certifi's CA bundle: 18 ms of
    CPU, most of a custom-provider start (so of a reload), of a JWKS fetch, and of each
    gateway a lab check starts. An ``SSLContext`` is safe to share between clients and
    threads. (``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are read when the first is made.)
    """
    return httpx.create_ssl_context(trust_env=trust_env)
