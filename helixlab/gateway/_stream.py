"""The SSE response of a streamed chat completion, as a pure ASGI app.

Why not Starlette's StreamingResponse: the stream's first chunk is awaited *before* the
response starts, so a provider that fails at once still gets a proper status (429, 502)
instead of a 200 followed by an error event; and a client that hangs up cancels the
provider's stream at once (closing it, so its upstream connection is released) and lets
the request end, which releases its kernel lease, so a waiting reload can drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping

from starlette.types import Message, Receive, Scope, Send

from ..llm import StreamChunk, encode_sse
from ._errors import upstream_error

__all__ = ["EventStream"]

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class EventStream:
    """Relays ``chunks`` as ``data:`` events ending with ``data: [DONE]``.

    An error before the first chunk becomes an OpenAI error response with its status; an
    error mid-stream becomes an ``{"error": ...}`` event and the stream ends without
    ``[DONE]`` (so clients know it is incomplete, and the openai client raises).
    """

    def __init__(
        self,
        chunks: AsyncIterator[StreamChunk],
        *,
        model: str,
        provider: str,
        headers: Mapping[str, str] | None = None,
    ):
        self.chunks = chunks
        self.model = model
        self.provider = provider
        self.headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.ensure_future(self._relay(scope, receive, send))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relay, watch):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            if relay.cancelled() or not relay.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
            else:
                relay.result()  # re-raise what the relay raised

    async def _relay(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = self.chunks
        try:
            try:
                first: StreamChunk | None = await anext(chunks)
            except StopAsyncIteration:
                first = None
            except Exception as exc:
                await upstream_error(exc, self.provider).response()(scope, receive, send)
                return
            await send(
                {"type": "http.response.start", "status": 200, "headers": _HEADERS + self.headers}
            )
            stream_id = (first.id if first else None) or f"chatcmpl-{uuid.uuid4().hex[:24]}"
            created = (first.created if first else None) or int(time.time())
            chunk = first
            try:
                while chunk is not None:
                    data = chunk.to_openai(stream_id, chunk.model or self.model, created)
                    await _body(send, encode_sse(data))
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        chunk = None
            except Exception as exc:
                error = upstream_error(exc, self.provider)
                await _body(send, encode_sse(error.body))
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await _body(send, encode_sse("[DONE]"))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
