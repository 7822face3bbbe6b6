"""Listening sockets for the servers helixlab runs (the gateway, the embedded upstream)."""

from __future__ import annotations

import socket

__all__ = ["bind_tcp"]


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
