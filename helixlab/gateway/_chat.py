"""``POST /v1/chat/completions``: parse and check the request, route it, answer as JSON or
as an SSE stream.

Every refusal names the field at fault (``param``) so the client can fix its request:
malformed JSON and wrong types are 400 ``invalid_request_error``; a model no provider
serves is 404 ``model_not_found``; no provider at all is 503. The gateway's own options
ride in the body's ``helixlab`` object (the openai client sends it with ``extra_body``)
and are removed before the provider sees the request.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..llm import ChatRequest, ChatResponse, StreamChunk, ToolCallDelta
from ._build import ROUTER_KEY
from ._config import GatewayConfig
from ._errors import GatewayError, upstream_error
from ._routing import ProviderRoute, Router
from ._stream import EventStream
from ._tools import complete, offer_tools, stream

__all__ = ["CONFIG_KEY", "chat_completions"]

CONFIG_KEY = "helixlab.config"
_FIELD = re.compile(r"request\.([A-Za-z_]\w*)")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


#: What middleware learnt of the caller (scope state ``helixlab.<key>``) that providers see
#: as ``ChatRequest.context``.
CALLER = ("claims", "client", "request_id")


class _Options(BaseModel):
    """The body's ``helixlab`` object: per-request gateway options."""

    model_config = ConfigDict(extra="forbid")

    execute_tools: bool | None = None


async def chat_completions(request: Request) -> Response | EventStream:
    """Answer one chat-completions request (see the module docstring)."""
    router: Router = request.scope[ROUTER_KEY]
    config: GatewayConfig = request.scope[CONFIG_KEY]
    body = await _json_body(request)
    options = _options(body.pop("helixlab", None))
    try:
        chat = ChatRequest.from_openai(body)
    except ValueError as exc:
        match = _FIELD.search(str(exc))
        raise GatewayError(400, str(exc), param=match.group(1) if match else None) from None
    state = request.scope.get("state", {})
    chat.context = {key: state[f"helixlab.{key}"] for key in CALLER if f"helixlab.{key}" in state}
    route = router.route(chat.model)
    _check_capabilities(route, chat)
    execute = config.execute_tools if options.execute_tools is None else options.execute_tools
    chat = offer_tools(chat, router, execute)
    headers = {"x-helixlab-provider": route.plugin}
    rounds = config.max_tool_rounds
    if chat.stream:
        if route.capabilities.supports_streaming:
            chunks = stream(route.provider, chat, router, execute=execute, max_rounds=rounds)
        else:
            pending = complete(route.provider, chat, router, execute=execute, max_rounds=rounds)
            chunks = _replay(pending, chat.include_usage)
        return EventStream(chunks, model=chat.model, provider=route.plugin, headers=headers)
    try:
        reply = await complete(route.provider, chat, router, execute=execute, max_rounds=rounds)
    except Exception as exc:
        raise upstream_error(exc, route.plugin) from None
    if not isinstance(reply, ChatResponse):
        raise GatewayError(
            502,
            f"Provider {route.plugin!r} returned {type(reply).__name__}, not a ChatResponse.",
            code="upstream_error",
        )
    return JSONResponse(reply.to_openai(), headers=headers)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise GatewayError(400, "The request body is empty; send a JSON chat-completions request.")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise GatewayError(400, "The request body is not valid JSON: nested too deeply.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"The request body is not valid JSON: {exc}.") from None
    except ValueError:  # Python's limit on integer digits
        raise GatewayError(400, "The request body holds a number with too many digits.") from None
    try:  # "\ud800" parses, then breaks every encoder downstream; only an escape makes one
        if _SURROGATE_ESCAPE.search(raw):
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise GatewayError(
            400, "The request body is not valid JSON: it contains an unpaired surrogate (\\ud800)."
        ) from None
    except RecursionError:
        raise GatewayError(400, "The request body is not valid JSON: nested too deeply.") from None
    if not isinstance(body, dict):
        raise GatewayError(
            400, f"The request body must be a JSON object, got {type(body).__name__}."
        )
    return body


def _options(value: Any) -> _Options:
    if value is None:
        return _Options()
    try:
        return _Options.model_validate(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in ("helixlab", *error["loc"]))
        raise GatewayError(400, f"Invalid {where}: {error['msg']}.", param=where) from None


def _check_capabilities(route: ProviderRoute, chat: ChatRequest) -> None:
    caps = route.capabilities
    if chat.tools and not caps.supports_tools:
        raise GatewayError(
            400,
            f"Provider {route.plugin!r} serving {chat.model!r} does not support tools.",
            param="tools",
        )
    limit = caps.max_tokens
    if chat.max_tokens is not None and limit is not None and chat.max_tokens > limit:
        raise GatewayError(
            400,
            f"max_tokens {chat.max_tokens} exceeds {limit}, the most {chat.model!r} allows.",
            param="max_tokens",
        )


async def _replay(reply_coro: Any, include_usage: bool) -> Any:
    """A finished reply as stream chunks, for a provider that cannot stream."""
    reply: ChatResponse = await reply_coro
    yield StreamChunk(role="assistant", content=reply.content or "", model=reply.model)
    for index, call in enumerate(reply.tool_calls):
        delta = ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.arguments)
        yield StreamChunk(tool_calls=[delta])
    yield StreamChunk(finish_reason=reply.finish_reason)
    if include_usage and reply.usage is not None:
        yield StreamChunk(usage=reply.usage)
