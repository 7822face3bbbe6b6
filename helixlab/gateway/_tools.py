"""Server-side tool execution: the multi-turn loop the course's Module 3.2 describes.

When a request asks for it (``"helixlab": {"execute_tools": true}`` in the body, which the
openai client sends with ``extra_body``) or the gateway is configured to, the gateway runs
the tools of tool plugins itself: the model asks for calls, the gateway runs them, appends
the results as ``tool`` messages and asks again, for at most ``max_tool_rounds`` rounds.
A tool that raises answers the model with the error text, so the model can recover; so
does a tool that runs past its plugin's ``tool_timeout`` (seconds, an attribute of the tool
plugin; 10 s when it sets none; ``builtin-tools`` takes it from its ``timeout`` setting):
the request goes on without it, and a reload need not wait for it to drain. (A plain
function that hangs keeps its worker thread: Python cannot kill threads.) A
reply calling any tool the gateway does not own goes back to the client unchanged: the
client offered that tool and runs it. If the request offers no tools, the tools of all
running tool plugins are offered.

Streaming keeps streaming: content deltas of every round pass through as they arrive;
tool-call deltas are held until the round ends, then either executed (and dropped) or,
for the last round, forwarded. Usage is summed over the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator
from typing import Any

from ..errors import describe
from ..kernel import mask
from ..llm import ChatRequest, ChatResponse, Message, StreamAccumulator, StreamChunk, ToolCall
from ._build import DEFAULT_TOOL_TIMEOUT
from ._routing import Router

__all__ = ["complete", "offer_tools", "stream"]


def offer_tools(request: ChatRequest, router: Router, execute: bool) -> ChatRequest:
    """The request as the provider should see it: with the gateway's tools if it runs them."""
    if execute and not request.tools and router.tools:
        return request.model_copy(update={"tools": router.definitions()})
    return request


async def _run_one(router: Router, call: ToolCall) -> Message:
    timeout = router.timeouts.get(call.name, DEFAULT_TOOL_TIMEOUT)
    try:
        async with asyncio.timeout(timeout):
            result = await router.tools[call.name].invoke(call.arguments)
    except TimeoutError:
        content = (
            f"Error: the tool {call.name!r} did not finish within {timeout:g}s and was "
            f"abandoned; answer without its result or try something simpler."
        )
    except Exception as exc:
        content = mask(f"Error: {describe(exc)}")  # the model may repeat it to the client
    else:
        if result is None:
            content = ""
        elif isinstance(result, str):
            content = result
        else:
            content = json.dumps(result, default=str)
    return Message.tool(call.id, content)


async def _run(router: Router, request: ChatRequest, reply: ChatResponse) -> ChatRequest:
    results = await asyncio.gather(*(_run_one(router, call) for call in reply.tool_calls))
    messages = [*request.messages, reply.message, *results]
    return request.model_copy(update={"messages": messages})


def _add(total: Any, usage: Any) -> Any:
    if usage is None:
        return total
    return usage if total is None else total + usage


async def complete(
    provider: Any, request: ChatRequest, router: Router, *, execute: bool, max_rounds: int
) -> ChatResponse:
    """One completion, running server-side tools for up to ``max_rounds`` rounds."""
    usage = None
    rounds = 0
    while True:
        reply = await provider.complete(request)
        usage = _add(usage, reply.usage)
        calls = [call.name for call in reply.tool_calls]
        if not (execute and rounds < max_rounds and router.runs(calls)):
            break
        request = await _run(router, request, reply)
        rounds += 1
    return reply.model_copy(update={"usage": usage}) if usage is not None else reply


async def open_stream(provider: Any, request: ChatRequest) -> AsyncIterator[StreamChunk]:
    """``provider.complete_stream(request)``, whether it is an async generator or a coroutine."""
    chunks = provider.complete_stream(request)
    if inspect.isawaitable(chunks):
        chunks = await chunks
    return chunks


async def stream(
    provider: Any, request: ChatRequest, router: Router, *, execute: bool, max_rounds: int
) -> AsyncIterator[StreamChunk]:
    """The chunks to relay to the client, running server-side tools between rounds."""
    if not execute:
        chunks = await open_stream(provider, request)
        async with _closing(chunks):
            async for chunk in chunks:
                yield chunk
        return
    usage = None
    rounds = 0
    first = True
    while True:
        acc = StreamAccumulator()
        held: list[StreamChunk] = []
        chunks = await open_stream(provider, request)
        async with _closing(chunks):
            async for chunk in chunks:
                acc.add(chunk)
                usage = _add(usage, chunk.usage)
                if chunk.tool_calls or chunk.finish_reason:
                    held.append(chunk.model_copy(update={"usage": None, "content": None}))
                if chunk.content or (chunk.role and first):
                    update: dict[str, Any] = {"tool_calls": [], "finish_reason": None}
                    update.update(usage=None, role=chunk.role if first else None)
                    first = False
                    yield chunk.model_copy(update=update)
        reply = acc.response(request.model)
        calls = [call.name for call in reply.tool_calls]
        if not (rounds < max_rounds and router.runs(calls)):
            break
        request = await _run(router, request, reply)
        rounds += 1
    for chunk in held:
        yield chunk
    if request.include_usage and usage is not None:
        yield StreamChunk(usage=usage)


@contextlib.asynccontextmanager
async def _closing(chunks: Any) -> AsyncIterator[None]:
    """Close a provider's stream however the loop ends (a client gone, an error)."""
    try:
        yield
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
