"""``request-logger``: one log entry per HTTP request, through ``custom-logger``.

.. code-block:: yaml

    request-logger:
      config:
        log_body: true                  # request bodies (JSON only, secrets masked)
        log_headers: [user-agent, x-request-id]
        skip_paths: [/health]           # plain prefixes, as in the course

Each entry has the method, path (never the query string, which may carry keys), status,
latency and client; ``.entries`` keeps the most recent ones for notebooks and tests.
``Authorization``, cookies and any header or body key that looks secret are written as
``***`` even when listed. Responses pass through untouched, so streams keep streaming;
the status is read from the response start and the latency runs to the last byte.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any, Literal

from pydantic import Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helixlab.kernel import MASK, Context, MiddlewarePlugin, PluginConfig, is_secret_key, redact

from ._asgi import client_identity, header, path_matches

__all__ = ["RequestLogger", "RequestLoggerConfig", "RequestLoggerMiddleware"]

_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)


class RequestLoggerConfig(PluginConfig):
    """What to log about each request, and which requests to leave out."""

    log_body: bool = False
    log_headers: list[str] = Field(default_factory=list)
    skip_paths: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4096, ge=0)
    max_entries: int = Field(default=200, ge=1, le=100_000)
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("log_headers")
    @classmethod
    def _lower(cls, names: list[str]) -> list[str]:
        return [name.strip().lower() for name in names if name.strip()]


class RequestLogger(MiddlewarePlugin):
    """Logs method, path, status and latency of every request (the course's Module 4.1)."""

    name = "request-logger"
    version = "1.0.0"
    description = "Logs each request's method, path, status and latency, secrets masked"
    dependencies = ("custom-logger",)
    config_model = RequestLoggerConfig

    def __init__(self) -> None:
        self.config = RequestLoggerConfig()
        self.entries: deque[dict[str, Any]] = deque(maxlen=self.config.max_entries)
        self._logger: Any = None

    def init(self, ctx: Context, config: RequestLoggerConfig) -> None:
        self.config = config
        self.entries = deque(maxlen=config.max_entries)
        self._logger = ctx.get("custom-logger")

    def get_middleware(self) -> Any:
        return lambda app: RequestLoggerMiddleware(app, plugin=self)

    def record(self, entry: dict[str, Any]) -> None:
        """Keep ``entry`` and write it through custom-logger."""
        self.entries.append(entry)
        message = f"{entry['method']} {entry['path']} {entry['status']}"
        self._logger.log(self.config.level, message, **entry)

    def headers_of(self, scope: Scope) -> dict[str, str]:
        """The configured headers present in the request, secret ones masked."""
        found: dict[str, str] = {}
        for name in self.config.log_headers:
            value = header(scope, name)
            if value is not None:
                secret = name in _SECRET_HEADERS or is_secret_key(name)
                found[name] = MASK if secret else value
        return found

    def body_of(self, body: bytes, truncated: bool, scope: Scope) -> Any:
        """A request body fit for a log: parsed JSON with secret keys masked, or a size."""
        content_type = (header(scope, "content-type") or "").lower()
        if not body:
            return None
        if "json" in content_type and not truncated:
            try:
                return redact(json.loads(body))
            except (ValueError, UnicodeDecodeError):
                pass
        more = "+" if truncated else ""
        return f"<{len(body)}{more} bytes of {content_type or 'unknown type'}>"


class RequestLoggerMiddleware:
    """Pure ASGI: watches ``receive`` and ``send`` go by without changing them."""

    def __init__(self, app: ASGIApp, *, plugin: RequestLogger) -> None:
        self.app = app
        self.plugin = plugin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.plugin.config
        if scope["type"] != "http" or path_matches(scope["path"], config.skip_paths):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body = bytearray()
        truncated = False

        async def watch_receive() -> Message:
            nonlocal truncated
            message = await receive()
            if message["type"] == "http.request" and not truncated:
                chunk = message.get("body", b"")
                room = config.max_body_bytes - len(body)
                body.extend(chunk[:room])
                truncated = len(chunk) > room
            return message

        async def watch_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, watch_receive if config.log_body else receive, watch_send)
        finally:
            entry: dict[str, Any] = {
                "method": scope.get("method", ""),
                "path": scope["path"],
                "status": status,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                "client": client_identity(scope),
            }
            headers = self.plugin.headers_of(scope)
            if headers:
                entry["headers"] = headers
            if config.log_body:
                entry["body"] = self.plugin.body_of(bytes(body), truncated, scope)
            self.plugin.record(entry)
