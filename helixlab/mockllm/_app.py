"""The mock upstream as a Starlette app, with the knobs labs and tests turn at runtime."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from helixlab.llm import (
    ChatRequest,
    ChatResponse,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    encode_sse,
    error_body,
)

from ._replies import Reply, make_reply, split_words

__all__ = ["CREATED", "MockLLM"]

CREATED = 1_700_000_000
"""The ``created`` timestamp of every mock response, so notebook outputs never change."""

#: The ``code`` OpenAI sends with some statuses.
_DEFAULT_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_ARGUMENT_PIECE = 8


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    message: str


class _DeliberateDrop(Exception):
    """Raised mid-stream so the server closes the connection, as drop_next() asked."""


class _HideDeliberateDrops(logging.Filter):
    """Keeps uvicorn from printing a traceback for a connection the mock dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DeliberateDrop))


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDeliberateDrops) for f in logger.filters):
        logger.addFilter(_HideDeliberateDrops())


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in OpenAI's shape, which the openai client turns into its typed exceptions."""
    body = error_body(status, message, param=param, code=code or _DEFAULT_CODES.get(status))
    return JSONResponse(body, status_code=status, headers=headers)


class _SSEResponse(Response):
    """Sends prepared SSE events one body chunk each; raises before event ``drop_at``."""

    def __init__(self, events: list[bytes], drop_at: int | None) -> None:
        super().__init__(media_type="text/event-stream")
        self.events = events
        self.drop_at = drop_at

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i, event in enumerate(self.events):
            if i == self.drop_at:
                raise _DeliberateDrop("connection dropped by MockLLM.drop_next()")
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class MockLLM:
    """A deterministic OpenAI-compatible chat-completions upstream, as an ASGI app.

    Replies are scripted (``script``), or else derived from the conversation: a summary
    after a tool result, a tool call when the last user message names an offered tool (or
    ``tool_choice`` forces one), otherwise ``"Echo: <last user message>"``. Ids count up per
    instance (``chatcmpl-mock-0001``, ``call_0001``), ``created`` is fixed, tokens are words.
    Every control method is thread-safe, so a notebook can turn knobs while it serves.

    >>> mock = MockLLM(models=("mock-small",))
    >>> mock.script(["Hello!"])
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Iterable[str] = ("mock-small", "mock-large"),
        latency: float = 0.0,
        script: Iterable[str | ToolCall] | None = None,
    ) -> None:
        self.api_key = api_key
        self.models: tuple[str, ...] = tuple(models)
        self._lock = threading.Lock()
        self._latency = float(latency)
        self._requests: list[dict[str, Any]] = []
        self._script: deque[str | ToolCall] = deque(script or ())
        self._faults: deque[_Fault] = deque()
        self._drops = 0
        self._completions = 0
        self._calls = 0
        _install_log_filter()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    # -- knobs -------------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of every chat-completions body received, oldest first."""
        with self._lock:
            return list(self._requests)

    def script(self, replies: Iterable[str | ToolCall]) -> None:
        """Replace the scripted replies: each request takes the next one, then echo resumes.

        A ToolCall entry makes that reply a tool call.
        """
        with self._lock:
            self._script = deque(replies)

    def fail_next(
        self,
        status: int = 500,
        count: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` chat requests with an OpenAI-shaped ``status`` error.

        ``retry_after`` (seconds) adds a ``Retry-After`` header, as a rate-limited API does.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"fail_next status {status} must be an HTTP error (400-599).")
        fault = _Fault(status, retry_after, message or f"Injected failure (HTTP {status}).")
        with self._lock:
            self._faults.extend([fault] * count)

    def drop_next(self, count: int = 1) -> None:
        """Close the connection halfway through each of the next ``count`` streamed replies."""
        with self._lock:
            self._drops += count

    def set_latency(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each chat request."""
        if seconds < 0:
            raise ValueError(f"latency {seconds} must not be negative.")
        with self._lock:
            self._latency = float(seconds)

    def reset(self) -> None:
        """Forget requests, script, faults, drops and latency; restart the id counters."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._faults.clear()
            self._drops = self._completions = self._calls = 0
            self._latency = 0.0

    # -- endpoints ---------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _list_models(self, request: Request) -> Response:
        denied = self._check_key(request)
        if denied is not None:
            return denied
        data = [
            {"id": name, "object": "model", "created": CREATED, "owned_by": "helixlab-mock"}
            for name in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error_response(400, f"The request body is not valid JSON: {exc}.")
        with self._lock:
            self._requests.append(body)
        denied = self._check_key(request)
        if denied is not None:
            return denied
        fault = self._take(self._faults)
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return error_response(fault.status, fault.message, headers=headers)
        try:
            chat = ChatRequest.from_openai(body)
        except ValueError as exc:
            return error_response(400, str(exc))
        if chat.model not in self.models:
            return error_response(
                404,
                f"The model {chat.model!r} does not exist. Available: {', '.join(self.models)}.",
                param="model",
                code="model_not_found",
            )
        forced = chat.forced_tool
        if forced is not None and forced not in {tool.name for tool in chat.tools}:
            return error_response(
                400, f"tool_choice names {forced!r}, which is not in tools.", param="tool_choice"
            )
        if self._latency:
            await asyncio.sleep(self._latency)
        reply, completion_id = self._reply(chat)
        if not chat.stream:
            response = ChatResponse(
                content=reply.content,
                model=chat.model,
                tool_calls=reply.tool_calls,
                usage=reply.usage,
                finish_reason=reply.finish_reason,
                id=completion_id,
                created=CREATED,
            )
            return JSONResponse(response.to_openai())
        events = [
            encode_sse(chunk.to_openai(completion_id, chat.model, CREATED))
            for chunk in _chunks(reply, chat.include_usage)
        ]
        events.append(encode_sse("[DONE]"))
        drop = self._take_drop()
        return _SSEResponse(events, drop_at=max(1, len(events) // 2) if drop else None)

    # -- helpers -----------------------------------------------------------------------

    def _check_key(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip() == self.api_key:
            return None
        message = "Incorrect API key provided." if header else "No API key provided."
        return error_response(401, message)

    def _take(self, queue: deque[Any]) -> Any:
        with self._lock:
            return queue.popleft() if queue else None

    def _take_drop(self) -> bool:
        with self._lock:
            if self._drops:
                self._drops -= 1
                return True
            return False

    def _reply(self, chat: ChatRequest) -> tuple[Reply, str]:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
            self._completions += 1
            completion_id = f"chatcmpl-mock-{self._completions:04d}"

            def next_call_id() -> str:
                self._calls += 1
                return f"call_{self._calls:04d}"

            return make_reply(chat, scripted, next_call_id), completion_id


def _chunks(reply: Reply, include_usage: bool) -> list[StreamChunk]:
    """The reply as OpenAI streams it: a role chunk, content word by word or tool-call deltas
    with the arguments in pieces, the finish reason, then usage if asked for."""
    chunks = [StreamChunk(role="assistant", content="" if reply.content is not None else None)]
    if reply.content:
        chunks += [StreamChunk(content=piece) for piece in split_words(reply.content)]
    for index, call in enumerate(reply.tool_calls):
        chunks.append(
            StreamChunk(
                tool_calls=[ToolCallDelta(index=index, id=call.id, name=call.name, arguments="")]
            )
        )
        text = call.arguments
        for start in range(0, len(text), _ARGUMENT_PIECE):
            piece = text[start : start + _ARGUMENT_PIECE]
            chunks.append(StreamChunk(tool_calls=[ToolCallDelta(index=index, arguments=piece)]))
    chunks.append(StreamChunk(finish_reason=reply.finish_reason))
    if include_usage:
        chunks.append(StreamChunk(usage=reply.usage))
    return chunks
