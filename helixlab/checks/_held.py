"""An upstream that holds its stream: for lab 2's check that a provider yields each
chunk as it arrives, rather than reading the whole body first."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading

__all__ = ["HELD_TEXT", "HOLD", "HeldStream"]

HOLD = 6.0  # seconds the held upstream waits after its first chunk, unless released
HELD_TEXT = "Echo: hold on"


class HeldStream:
    """An SSE upstream on loopback (``url``) that sends one chunk of ``model``'s answer,
    then waits for ``release`` (or :data:`HOLD` seconds) before the rest.

    A provider that yields as the chunks arrive hands the first one over while the
    upstream waits; one that reads the whole body first gets nothing until the end.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.release = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    def __enter__(self) -> HeldStream:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._answer, "127.0.0.1", 0), self._loop
        ).result(5)
        self._server = server
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()

        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            if not head.startswith(b"POST"):
                writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{"data": []}')
                await writer.drain()
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            )
            words = ["Echo: ", "hold ", "on"]
            await self._send(writer, self._sse(words[0]))
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, HOLD)
            for word in words[1:]:
                await self._send(writer, self._sse(word))
            await self._send(writer, self._sse(None, "stop") + "data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, text: str) -> None:
        data = text.encode()
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    def _sse(self, content: str | None, finish: str | None = None) -> str:
        delta = {"content": content} if content is not None else {}
        chunk = {
            "id": "chatcmpl-held",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n"
