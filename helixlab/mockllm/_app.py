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
    Usage,
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

    Like OpenAI it sends what clients read beyond the reply: ``system_fingerprint``,
    ``service_tier``, ``message.refusal`` and ``annotations``, usage details (cached and
    reasoning tokens); ``n`` choices (choice ``i`` > 0 says so at its end), per-token
    ``logprobs`` with ``top_logprobs`` alternatives when asked. ``add_fields`` adds fields
    of your own, to see a gateway pass through what it does not know.

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
        self._fields: dict[str, dict[str, Any]] = {"response": {}, "message": {}, "usage": {}}
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

    def add_fields(
        self,
        response: dict[str, Any] | None = None,
        message: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        """Send these fields in every reply: ``response`` at the top level of a completion
        and of each chunk, ``message`` in the message (stream: the first delta), ``usage``
        in the usage (e.g. ``{"prompt_tokens_details": {"cached_tokens": 3}}``)."""
        with self._lock:
            self._fields["response"].update(response or {})
            self._fields["message"].update(message or {})
            self._fields["usage"].update(usage or {})

    def reset(self) -> None:
        """Forget requests, script, faults, drops, latency and added fields; restart the id
        counters."""
        with self._lock:
            self._fields = {"response": {}, "message": {}, "usage": {}}
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
        with self._lock:
            fields = {key: dict(value) for key, value in self._fields.items()}
        top = {**_TOP_FIELDS, **fields["response"]}
        choices = _choices(reply, chat)
        if not chat.stream:
            first, *others = choices
            response = ChatResponse(
                content=first.content,
                model=chat.model,
                tool_calls=first.tool_calls,
                usage=_usage(reply, len(choices), fields["usage"]),
                finish_reason=first.finish_reason,
                id=completion_id,
                created=CREATED,
                logprobs=_logprobs(first.content, chat),
                message_extra={**_MESSAGE_FIELDS, **fields["message"]},
                more_choices=[
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": other.content}
                        | _MESSAGE_FIELDS
                        | fields["message"],
                        "logprobs": _logprobs(other.content, chat),
                        "finish_reason": other.finish_reason,
                    }
                    for i, other in enumerate(others, 1)
                ],
                extra=top,
            )
            return JSONResponse(response.to_openai())
        chunks = [
            chunk
            for index, choice in enumerate(choices)
            for chunk in _chunks(choice, chat, index, fields["message"])
        ]
        if chat.include_usage:
            chunks.append(StreamChunk(usage=_usage(reply, len(choices), fields["usage"])))
        events = [
            encode_sse(
                chunk.model_copy(update={"extra": top}).to_openai(
                    completion_id, chat.model, CREATED
                )
            )
            for chunk in chunks
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


_TOP_FIELDS = {"system_fingerprint": "fp_helixlab_mock", "service_tier": "default"}
_MESSAGE_FIELDS: dict[str, Any] = {"refusal": None, "annotations": []}


def _choices(reply: Reply, chat: ChatRequest) -> list[Reply]:
    """``n`` choices: the reply, then copies whose text says which choice they are."""
    n = chat.extra.get("n")
    count = n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 8 else 1
    choices = [reply]
    for i in range(1, count):
        content = None if reply.content is None else f"{reply.content} (choice {i})"
        choices.append(Reply(content, list(reply.tool_calls), reply.finish_reason, reply.usage))
    return choices


def _usage(reply: Reply, choices: int, added: dict[str, Any]) -> Usage:
    """The reply's usage (completion tokens of every choice), with OpenAI's breakdowns."""
    usage = reply.usage
    completion = usage.completion_tokens * choices
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=completion,
        extra={
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        | added,
    )


def _token_logprobs(pieces: list[str], chat: ChatRequest) -> list[dict[str, Any]]:
    """OpenAI's per-token entries: every token at logprob -0.25 (probability ~0.78), with
    ``top_logprobs`` alternatives each less likely than the last."""
    top = chat.extra.get("top_logprobs")
    alternatives = top if isinstance(top, int) and not isinstance(top, bool) else 0
    entries = []
    for piece in pieces:
        entry: dict[str, Any] = {
            "token": piece,
            "logprob": -0.25,
            "bytes": list(piece.encode()),
            "top_logprobs": [
                {"token": piece if k == 0 else f"{piece.strip()}~{k}", "logprob": -0.25 * (k + 1)}
                | {"bytes": list((piece if k == 0 else f"{piece.strip()}~{k}").encode())}
                for k in range(max(0, min(alternatives, 20)))
            ],
        }
        entries.append(entry)
    return entries


def _logprobs(content: str | None, chat: ChatRequest) -> dict[str, Any] | None:
    if chat.extra.get("logprobs") is not True or content is None:
        return None
    return {"content": _token_logprobs(split_words(content), chat), "refusal": None}


def _chunks(
    reply: Reply, chat: ChatRequest, choice: int, message_fields: dict[str, Any]
) -> list[StreamChunk]:
    """One choice as OpenAI streams it: a role chunk, content word by word or tool-call
    deltas with the arguments in pieces, then the finish reason."""
    first = StreamChunk(
        role="assistant",
        content="" if reply.content is not None else None,
        index=choice,
        delta_extra={"refusal": None, **message_fields},
    )
    chunks = [first]
    if reply.content:
        for piece in split_words(reply.content):
            logprobs = None
            if chat.extra.get("logprobs") is True:
                logprobs = {"content": _token_logprobs([piece], chat), "refusal": None}
            chunks.append(StreamChunk(content=piece, index=choice, logprobs=logprobs))
    for index, call in enumerate(reply.tool_calls):
        chunks.append(
            StreamChunk(
                index=choice,
                tool_calls=[ToolCallDelta(index=index, id=call.id, name=call.name, arguments="")],
            )
        )
        text = call.arguments
        for start in range(0, len(text), _ARGUMENT_PIECE):
            piece = text[start : start + _ARGUMENT_PIECE]
            delta = ToolCallDelta(index=index, arguments=piece)
            chunks.append(StreamChunk(index=choice, tool_calls=[delta]))
    chunks.append(StreamChunk(index=choice, finish_reason=reply.finish_reason))
    return chunks
