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
import types
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from ..llm import StreamChunk, encode_sse
from ._errors import upstream_error

__all__ = ["EventStream"]

#: At most this many events are joined into one write, however fast they come.
_MAX_BATCH = 64
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class EventStream:
    """Relays ``chunks`` as ``data:`` events ending with ``data: [DONE]``.

    An error before the first chunk becomes an OpenAI error response with its status; an
    error mid-stream becomes an ``{"error": ...}`` event and the stream ends without
    ``[DONE]`` (so clients know it is incomplete, and the openai client raises). Events
    that are ready together are sent together (see ``_next_ready``).
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
            pending: list[bytes] = []

            async def flush() -> None:
                if pending:
                    data = b"".join(pending)
                    pending.clear()
                    await _body(send, data)

            try:
                while chunk is not None:
                    data = chunk.to_openai(stream_id, chunk.model or self.model, created)
                    pending.append(encode_sse(data))
                    if len(pending) >= _MAX_BATCH:
                        await flush()
                    try:
                        chunk = await _next_ready(chunks, flush)
                    except StopAsyncIteration:
                        chunk = None
            except Exception as exc:
                error = upstream_error(exc, self.provider)
                pending.append(encode_sse(error.body))
                await flush()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            pending.append(encode_sse("[DONE]"))
            await flush()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


async def _next_ready(chunks: AsyncIterator[StreamChunk], flush: Any) -> StreamChunk:
    """The next chunk; ``flush()`` first if it is not there yet.

    Chunks that arrived together (one read from the upstream) thus leave in one write to
    the client, while a chunk that has to be waited for never holds back the ones before
    it. The first step of ``anext`` runs here; if it would wait, the pending events are
    sent, then the rest of it runs exactly as ``await`` would run it.
    """
    step = anext(chunks).__await__()
    try:
        waiting_on = step.send(None)
    except StopIteration as done:
        return done.value
    try:
        await flush()
    except BaseException:
        step.close()
        raise
    return await _finish(step, waiting_on)


@types.coroutine
def _finish(step: Any, waiting_on: Any) -> Any:
    """Drive an awaitable already started (its first yield was ``waiting_on``) to its end."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as exc:  # cancellation thrown in: pass it to the awaitable
            try:
                waiting_on = step.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = step.send(sent)
            except StopIteration as done:
                return done.value


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
