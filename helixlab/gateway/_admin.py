"""The admin API: reload, configure, list and watch the plugins of a running gateway.

Off unless an admin key is configured (``gateway: admin_key:``, ``--admin-key`` or the
``HELIXLAB_ADMIN_KEY`` variable). It lives on its own prefix, ``/admin``, dispatched by
the gateway's outermost app before any lease is taken, so no plugin's middleware ever
sees an admin request (nor could a broken middleware lock the operator out). Every
request needs ``Authorization: Bearer KEY``, compared in constant time.

    POST /admin/reload     {"plugin": NAME}                 -> the reload report
    POST /admin/configure  {"plugin": NAME, "config": {…}}  -> the reload report
    GET  /admin/plugins                                      -> one row per plugin
    GET  /admin/events                                       -> the events, as SSE

A refused reload answers 409 with the report naming the plugin and the phase (the old
versions keep serving); an unknown plugin 404; a config its model refuses 422; on a
fleet, a failure of its Redis 503 (code ``fleet_redis_unavailable``). A failure's body
also carries ``error`` in the OpenAI shape (``message``, ``type``, ``param``, ``code``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..kernel import redact
from ._errors import error_body, error_response
from ._operations import Operations, Outcome

__all__ = ["AdminApp", "event_json"]


def event_json(event: Any) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "kind": event.kind,
        "plugin": event.plugin,
        "version": event.version,
        "detail": event.detail,
        "error": event.error,
        "time": event.time,
        "text": str(event),
    }


class AdminApp:
    """The ASGI app behind ``/admin``; ``close()`` ends open event streams (on stop)."""

    def __init__(self, operations: Operations, key: str):
        if not key:
            raise ValueError("the admin API needs a non-empty key")
        self.operations = operations
        self.kernel = operations.kernel
        self._key = key.encode()
        self._closing = asyncio.Event()
        self._app = Starlette(
            routes=[
                Route("/admin/reload", self.reload, methods=["POST"]),
                Route("/admin/configure", self.configure, methods=["POST"]),
                Route("/admin/plugins", self.plugins, methods=["GET"]),
                Route("/admin/events", self.events, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        sent = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                sent = value
                break
        challenge = {"WWW-Authenticate": 'Bearer realm="helixlab-admin"'}
        if not sent:
            return error_response(
                401,
                "The admin API needs `Authorization: Bearer KEY` (the gateway's admin key).",
                code="admin_key_missing",
                headers=challenge,
            )
        scheme, _, token = sent.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
            return error_response(
                401, "Wrong admin key.", code="admin_key_invalid", headers=challenge
            )
        return None

    def close(self) -> None:
        self._closing.set()

    # -- routes ---------------------------------------------------------------------------

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            return error_response(400, f"The body is not JSON: {exc}.", code="invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("plugin"), str):
            return error_response(
                400, 'The body must be a JSON object with "plugin": NAME.', param="plugin"
            )
        return body

    @staticmethod
    def _answer(outcome: Outcome) -> Response:
        body = outcome.json()
        if not outcome.ok:  # what any OpenAI-style client reads as the error
            code = "fleet_redis_unavailable" if outcome.phase == "redis" else None
            body.update(error_body(outcome.status, outcome.text, code=code))
        return JSONResponse(body, status_code=outcome.status)

    async def reload(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        return self._answer(await self.operations.reload(body["plugin"]))

    async def configure(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        return self._answer(
            await self.operations.configure(body["plugin"], body.get("config") or {})
        )

    async def plugins(self, request: Request) -> Response:
        rows = []
        for row in self.kernel.info():
            rows.append(
                {
                    "name": row.name,
                    "kind": row.kind,
                    "version": row.version,
                    "state": row.state,
                    "health": row.health,
                    "reload_count": row.reload_count,
                    "origin": row.origin,
                    "source": row.source,
                    "dependencies": list(row.dependencies),
                    "dependents": list(row.dependents),
                    "config": json.loads(json.dumps(redact(row.config), default=str)),
                    "error": row.error,
                }
            )
        return JSONResponse({"object": "list", "data": rows})

    async def events(self, request: Request) -> Response:
        return StreamingResponse(
            self._stream(request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def _stream(self, request: Request) -> AsyncIterator[bytes]:
        events = self.kernel.awatch().__aiter__()
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            yield b": subscribed to the kernel's events\n\n"
            while True:
                pending = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait(
                    {pending, closing}, timeout=15, return_when="FIRST_COMPLETED"
                )
                if closing in done:
                    pending.cancel()
                    return
                if pending not in done:
                    pending.cancel()
                    yield b": keep-alive\n\n"
                    continue
                event = pending.result()
                data = json.dumps(event_json(event))
                yield f"event: {event.kind}\ndata: {data}\n\n".encode()
        finally:
            closing.cancel()
            await events.aclose()
