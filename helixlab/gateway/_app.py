"""The gateway's outermost ASGI app: one kernel lease per request, the body limit, and the
last line of defence for errors.

Each HTTP request's body is read first; then the request takes ``kernel.lease()`` and
runs on ``lease.extras["gateway"]`` — the middleware chain and router built for that
generation — until its response is complete (a stream until its last byte) or the client
is gone; only then is the lease released. A reload therefore never changes a request
midway, and its old instances stop only after every request that started on them has
finished. A client sending its body slowly holds no lease meanwhile, so it cannot hold a
reload back (nor be served later by an instance stopped after the drain timeout).

Health (``/livez``, ``/readyz``, ``/health``) is answered before any of that, outside every
chain: no plugin's limit or authentication ever sees a probe. And no request reaches a
chain while a plugin that guards requests is not serving in its generation: it is answered
503 naming the plugin and the phase (see ``_guards``: fail closed).

The body limit is enforced while the body is read: a declared ``Content-Length`` above it
is refused before anything runs, and a chunked body is cut off as soon as it passes the
limit. Either way the client gets 413.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..llm import error_body
from ._build import GatewayState
from ._chat import CONFIG_KEY
from ._config import GatewayConfig
from ._endpoints import KERNEL_KEY
from ._errors import GatewayError, error_response
from ._forwarded import ProxyHeaders
from ._guards import refusal, unguarded
from ._health import HEALTH_PATHS, STOPPING_KEY, make_health_app
from ._repeats import RepeatedErrors

__all__ = ["Gateway"]

logger = logging.getLogger("helixlab.gateway")
ADMIN_PREFIX = "/admin"

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
#: Response headers a browser's script may read.
_EXPOSED = ("x-request-id", "x-helixlab-provider", "retry-after", "x-ratelimit-remaining")


class Gateway:
    """The ASGI app a server runs; the routes themselves sit at the core of each
    generation's chain (see ``_build``).

    Every response carries ``x-request-id`` (the openai client's ``_request_id``), also in
    the scope state as ``helixlab.request_id`` for middleware and providers; a middleware
    that sets its own (the course's ``request-id`` example) is left to do so. With
    ``cors_origins`` set, CORS (preflights included) is answered before anything else,
    so a preflight needs no credentials.
    """

    def __init__(self, kernel: Any, config: GatewayConfig, admin: Any = None):
        self.kernel = kernel
        self.config = config
        self.admin = admin  # the admin API's app, on its own prefix; None: off
        self.errors = RepeatedErrors(logger)
        self.stopping = False  # set when the server begins to stop: /readyz turns 503
        self.proxies = ProxyHeaders(config.forwarded_allow_ips, config.forwarded_header)
        self._health = make_health_app()
        self._http: ASGIApp = self._serve
        if config.cors_origins:
            self._http = CORSMiddleware(
                self._serve,
                allow_origins=config.cors_origins,
                allow_methods=("GET", "POST", "OPTIONS"),
                allow_headers=config.cors_allow_headers,
                expose_headers=_EXPOSED,
                max_age=config.cors_max_age,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: nothing here speaks them
            await send({"type": "websocket.close", "code": 1003})
            return
        self.proxies.apply(scope)  # behind a trusted proxy: the real client's address
        path = scope["path"]
        if self.admin is not None and (path == ADMIN_PREFIX or path.startswith("/admin/")):
            # before any lease and outside every generation's chain: no plugin sees it
            await self.admin(scope, receive, send)
            return
        request_id = _request_id(scope, self.config.accept_request_id)
        scope.setdefault("state", {})["helixlab.request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if not any(key.lower() == b"x-request-id" for key, _ in headers):
                    message = {**message, "headers": [*headers, id_header]}
            await send(message)

        await self._http(scope, receive, send_with_id)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in HEALTH_PATHS:  # outside every chain: no lease, no plugin
            scope[KERNEL_KEY] = self.kernel
            scope[CONFIG_KEY] = self.config
            scope[STOPPING_KEY] = lambda: self.stopping
            await self._health(scope, receive, send)
            return
        limit = self.config.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit).response()(scope, receive, send)
            return
        try:
            body = await _read_body(receive, limit)
        except GatewayError as exc:
            await exc.response()(scope, receive, send)
            return
        if body is None:
            return  # the client left before its body was complete: nobody to answer
        scope[KERNEL_KEY] = self.kernel
        scope[CONFIG_KEY] = self.config
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        lease = self.kernel.lease().bind()  # cancelled if its drain times out
        try:
            state: GatewayState | None = lease.extras.get("gateway")
            if state is None:
                raise GatewayError(503, "The gateway is not built yet; retry.", code="not_ready")
            missing = unguarded(self.kernel, lease.generation.live)
            if missing:  # fail closed: never serve without a plugin that guards requests
                raise refusal(missing)
            await state.app(scope, _replay(body, receive), tracking_send)
        except asyncio.CancelledError:
            if not lease.abandoned:
                raise
            await _end_abandoned(send, started)  # the drain deadline passed: end it, with why
        except GatewayError as exc:
            if started:
                raise
            await exc.response()(scope, receive, send)
        except Exception as exc:
            if not started:
                self.errors.log(f"Unexpected error serving {scope['method']} {scope['path']}", exc)
                await error_response(500, "The gateway failed unexpectedly; the error was logged.")(
                    scope, receive, send
                )
            else:
                self.errors.log(f"Error serving {scope['method']} {scope['path']}", exc)
        finally:
            lease.release()


async def _end_abandoned(send: Any, started: bool) -> None:
    """End a response whose plugins were stopped under it (an error event for a stream)."""
    body = error_body(
        503, "The plugins serving this response were reloaded and stopped.", code="reloaded"
    )
    message = b"data: " + json.dumps(body).encode() + b"\n\n"
    with contextlib.suppress(Exception, asyncio.TimeoutError):  # a client that reads nothing
        async with asyncio.timeout(1.0):
            if not started:
                await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": message, "more_body": False})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"The request body is larger than the gateway's limit of {limit} bytes "
        f"(gateway option max_body_bytes).",
        code="request_too_large",
    )


def _request_id(scope: Scope, accept: bool) -> str:
    """The client's well-formed ``x-request-id`` if accepted, else a new ``req_...``."""
    if accept:
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                if _REQUEST_ID.fullmatch(value):
                    return value.decode("ascii")
                break
    return f"req_{uuid.uuid4().hex}"


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body (GatewayError 413 once it passes ``limit``); None if the client left."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives the body already read, then waits on the client (disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
