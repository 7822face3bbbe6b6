"""ASGI helpers for plugin authors: call a middleware with a fake next app, serve an app.

``call_middleware`` runs one request through a middleware factory (or a MiddlewarePlugin)
in process: the next app records what reached it and answers with ``reply``; the result
says what the middleware let through and what the client got back. ``serve_asgi`` serves
any ASGI app with uvicorn on a loopback port, for tests that want real HTTP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json as jsonlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._net import ReadyServer, bind_tcp, http_url
from ..kernel import ASGIApp, Message, MiddlewarePlugin, Scope

__all__ = ["Downstream", "MiddlewareCall", "acall_middleware", "call_middleware", "serve_asgi"]


@dataclass
class Downstream:
    """What reached the fake next app: the scope and the body the middleware passed on."""

    scope: Scope
    body: bytes

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]}

    def json(self) -> Any:
        return jsonlib.loads(self.body)


@dataclass
class MiddlewareCall:
    """One request through a middleware: what the client got, and what went downstream."""

    status: int
    headers: dict[str, str]
    body: bytes
    downstream: list[Downstream] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the request reached the next app (False: the middleware answered itself)."""
        return bool(self.downstream)

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def _factory(middleware: Any) -> Callable[[ASGIApp], ASGIApp]:
    if isinstance(middleware, MiddlewarePlugin):
        return middleware.get_middleware()
    if not callable(middleware):
        raise TypeError(f"expected a middleware factory or a MiddlewarePlugin, not {middleware!r}")
    return middleware


async def acall_middleware(
    middleware: Any,
    *,
    method: str = "POST",
    path: str = "/v1/chat/completions",
    json: Any = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    reply: Any = None,
    reply_status: int = 200,
    state: Mapping[str, Any] | None = None,
) -> MiddlewareCall:
    """Async twin of :func:`call_middleware`."""
    if body is None:
        body = b"" if json is None else jsonlib.dumps(json).encode()
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if json is not None and not any(k == b"content-type" for k, _ in raw):
        raw.append((b"content-type", b"application/json"))
    raw.append((b"content-length", str(len(body)).encode()))
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": client,
        "server": ("127.0.0.1", 80),
        "state": dict(state or {}),
    }
    downstream: list[Downstream] = []
    answer = jsonlib.dumps({"ok": True} if reply is None else reply).encode()

    async def next_app(scope: Scope, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        downstream.append(Downstream(scope, b"".join(chunks)))
        await send(
            {
                "type": "http.response.start",
                "status": reply_status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never leaves while we listen
        return {"type": "http.disconnect"}

    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    app = _factory(middleware)(next_app)
    await app(scope, receive, send)
    start = next((m for m in messages if m["type"] == "http.response.start"), None)
    if start is None:
        raise AssertionError("the middleware returned without sending a response")
    got = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start.get("headers", ())}
    content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return MiddlewareCall(start["status"], got, content, downstream, messages)


def call_middleware(middleware: Any, **request: Any) -> MiddlewareCall:
    """Send one request through ``middleware`` (a factory ``app -> app`` or a plugin).

    ``request``: ``method``, ``path``, ``json`` or ``body``, ``headers``, ``client``;
    ``reply``/``reply_status``: what the fake next app answers.

    >>> def stamp(app):
    ...     async def stamped(scope, receive, send):
    ...         scope["headers"].append((b"x-stamp", b"1"))
    ...         await app(scope, receive, send)
    ...     return stamped
    >>> call = call_middleware(stamp, json={"model": "m"})
    >>> call.status, call.downstream[0].headers["x-stamp"]
    (200, '1')
    """
    coro = acall_middleware(middleware, **request)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # a loop runs in this thread (a notebook cell): run on a fresh loop in a worker thread
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, coro).result()


@contextlib.contextmanager
def serve_asgi(app: ASGIApp, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port (a thread); yields its base URL."""
    import uvicorn

    sock = bind_tcp(host, 0)
    ready = threading.Event()
    # proxy_headers=False: uvicorn would otherwise take the client address from
    # X-Forwarded-For for loopback peers, behind the middleware's back
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, http="h11", loop="asyncio", proxy_headers=False
    )
    server = ReadyServer(config, ready)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    if not ready.wait(10) or not server.started:
        server.should_exit = True
        thread.join(10)
        sock.close()
        raise RuntimeError("uvicorn did not start")
    try:
        yield http_url(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
