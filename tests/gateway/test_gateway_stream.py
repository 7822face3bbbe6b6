"""The SSE relay as a plain ASGI app: events that are ready together leave in one write,
an event that has to be waited for never holds back those before it."""

from __future__ import annotations

import asyncio
from typing import Any

from helixlab.gateway._stream import EventStream
from helixlab.llm import StreamChunk


async def _drive(chunks: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = EventStream(chunks, model="m", provider="p")
    await app({"type": "http"}, receive, send)
    return sent


def _bodies(sent: list[dict[str, Any]]) -> list[bytes]:
    return [m["body"] for m in sent if m["type"] == "http.response.body" and m["body"]]


def test_chunks_ready_together_are_sent_in_one_write():
    async def chunks() -> Any:
        for word in ("a", "b", "c"):
            yield StreamChunk(content=word)

    sent = asyncio.run(_drive(chunks()))
    [body] = _bodies(sent)
    assert body.count(b"data: ") == 4 and body.endswith(b"data: [DONE]\n\n")


def test_a_chunk_that_must_be_waited_for_does_not_hold_back_the_ones_before():
    seen_before_wait: list[list[bytes]] = []

    async def main() -> list[dict[str, Any]]:
        gate = asyncio.Event()
        sent: list[dict[str, Any]] = []

        async def chunks() -> Any:
            yield StreamChunk(content="first")
            yield StreamChunk(content="second")
            seen_before_wait.append(_bodies(sent))
            gate.set()
            await asyncio.sleep(0.01)  # the upstream's next bytes are not there yet
            yield StreamChunk(content="third")

        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await EventStream(chunks(), model="m", provider="p")({"type": "http"}, receive, send)
        return sent

    sent = asyncio.run(main())
    # the generator ran on before its wait, so nothing was flushed yet when it reached it;
    # the flush happens the moment anext would wait: first and second in one write
    assert seen_before_wait == [[]]
    bodies = _bodies(sent)
    assert [b.count(b"data: ") for b in bodies] == [2, 2]  # first+second, then third+[DONE]
    assert b"first" in bodies[0] and b"second" in bodies[0] and b"third" in bodies[1]


def test_an_endless_burst_is_still_sent_in_bounded_writes():
    async def chunks() -> Any:
        for i in range(200):
            yield StreamChunk(content=str(i))

    bodies = _bodies(asyncio.run(_drive(chunks())))
    assert len(bodies) >= 3
    assert all(b.count(b"data: ") <= 64 for b in bodies)
    assert b"".join(bodies).count(b"data: ") == 201


def test_a_mid_stream_error_follows_the_events_before_it():
    async def chunks() -> Any:
        yield StreamChunk(content="ok")
        raise RuntimeError("upstream broke")

    bodies = _bodies(asyncio.run(_drive(chunks())))
    joined = b"".join(bodies)
    assert joined.index(b'"ok"') < joined.index(b'"error"')
    assert b"[DONE]" not in joined


def test_a_client_leaving_while_a_chunk_is_awaited_closes_the_provider_stream():
    async def main() -> bool:
        closed = asyncio.Event()
        leave = asyncio.Event()

        async def chunks() -> Any:
            try:
                yield StreamChunk(content="first")
                leave.set()
                await asyncio.Event().wait()  # never comes
                yield StreamChunk(content="never")
            finally:
                closed.set()

        async def receive() -> dict[str, Any]:
            await leave.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            return None

        await asyncio.wait_for(
            EventStream(chunks(), model="m", provider="p")({"type": "http"}, receive, send), 5
        )
        return closed.is_set()

    assert asyncio.run(main())
