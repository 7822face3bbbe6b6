"""Server-sent events as the chat-completions stream uses them: ``data: {json}`` events
ended by ``data: [DONE]``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from ._stream import StreamChunk

__all__ = ["aiter_sse_chunks", "encode_sse", "iter_sse_chunks"]


def encode_sse(payload: dict[str, Any] | str) -> bytes:
    """One ``data:`` event: a dict as compact JSON, a string as is (``encode_sse("[DONE]")``)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class _Decoder:
    def __init__(self) -> None:
        self.data: list[str] = []
        self.done = False

    def feed(self, line: str) -> StreamChunk | None:
        line = line.rstrip("\r\n")
        if line.startswith("data:"):
            self.data.append(line[5:].removeprefix(" "))
            return None
        if line or not self.data:  # comments, event:/id: fields, stray blank lines
            return None
        payload, self.data = "\n".join(self.data), []
        if payload == "[DONE]":
            self.done = True
            return None
        try:
            event = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Stream event is not JSON: {payload[:80]!r}.") from exc
        if isinstance(event, dict) and "error" in event:
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise ValueError(f"Upstream reported an error mid-stream: {message}")
        return StreamChunk.from_openai(event)

    def finish(self) -> None:
        if self.data:
            self.feed("")
        if not self.done:
            raise ValueError("Stream ended before 'data: [DONE]'; the response is incomplete.")


def iter_sse_chunks(lines: Iterable[str]) -> Iterator[StreamChunk]:
    """StreamChunks from the lines of an SSE body (e.g. ``httpx.Response.iter_lines()``).

    Raises ValueError on an error event, or if the body ends without ``[DONE]``.
    """
    decoder = _Decoder()
    for line in lines:
        chunk = decoder.feed(line)
        if chunk is not None:
            yield chunk
        if decoder.done:
            return
    decoder.finish()


async def aiter_sse_chunks(lines: AsyncIterable[str]) -> AsyncIterator[StreamChunk]:
    """Async twin of :func:`iter_sse_chunks` (e.g. over ``httpx.Response.aiter_lines()``)."""
    decoder = _Decoder()
    async for line in lines:
        chunk = decoder.feed(line)
        if chunk is not None:
            yield chunk
        if decoder.done:
            return
    decoder.finish()
