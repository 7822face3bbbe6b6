"""Small plugins and helpers for the gateway tests: an in-process provider (the mock's
deterministic replies, no HTTP), header-adding and refusing middleware, a tool plugin."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import helixlab as hx
from helixlab.gateway import error_response
from helixlab.llm import (
    ChatRequest,
    ChatResponse,
    ProviderCapabilities,
    StreamChunk,
    Tool,
    ToolCallDelta,
)
from helixlab.mockllm._replies import make_reply, split_words

_instances = itertools.count(1)


class UpstreamError(Exception):
    """What a provider raises for an upstream HTTP error: ``.status`` and an OpenAI ``.body``."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": "upstream", "param": None, "code": "x"}}
        self.retry_after = retry_after


class Gate:
    """Holds streams after their first chunk until opened (from any thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.event = asyncio.Event()

    def open(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)


class FakeProvider:
    """Deterministic replies (the mock's rules) tagged with this instance's number."""

    def __init__(self, instance: int, models: tuple[str, ...], options: dict[str, Any]):
        self.instance = instance
        self.models = models
        self.options = options
        self.calls = 0
        self.closed_streams = 0
        self.stopped = False
        self.requests: list[ChatRequest] = []

    def _check_alive(self) -> None:
        if self.stopped:
            raise RuntimeError(f"provider instance {self.instance} used after it was stopped")

    def _reply(self, request: ChatRequest) -> Any:
        self._check_alive()
        self.requests.append(request)
        fail = self.options.get("fail")
        if fail is not None:
            raise fail() if callable(fail) else fail
        self.calls += 1
        ids = itertools.count(self.calls * 100)
        reply = make_reply(request, None, lambda: f"call_{self.instance}_{next(ids)}")
        if reply.content is not None and not reply.tool_calls:
            reply.content = f"[{self.instance}] {reply.content}"
        return reply

    async def complete(self, request: ChatRequest) -> ChatResponse:
        reply = self._reply(request)
        return ChatResponse(
            content=reply.content,
            model=request.model,
            tool_calls=reply.tool_calls,
            usage=reply.usage,
            finish_reason=reply.finish_reason,
        )

    async def complete_stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        reply = self._reply(request)
        gate: Gate | None = self.options.get("gate")
        try:
            yield StreamChunk(role="assistant", content="", model=request.model)
            if gate is not None:
                await gate.event.wait()
            for piece in split_words(reply.content or ""):
                if reply.content:
                    self._check_alive()
                    yield StreamChunk(content=piece)
                    await asyncio.sleep(0)
            for index, call in enumerate(reply.tool_calls):
                first = ToolCallDelta(index=index, id=call.id, name=call.name, arguments="")
                yield StreamChunk(tool_calls=[first])
                yield StreamChunk(tool_calls=[ToolCallDelta(index=index, arguments=call.arguments)])
            yield StreamChunk(finish_reason=reply.finish_reason)
            if request.include_usage:
                yield StreamChunk(usage=reply.usage)
        finally:
            self.closed_streams += 1

    async def health_check(self) -> None:
        return None

    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(supports_tools=True, models=self.models, max_tokens=4096)


def provider_plugin(
    name: str = "fake-provider",
    models: tuple[str, ...] = ("fake-small", "fake-large"),
    *,
    priority: int = 0,
    options: dict[str, Any] | None = None,
    log: list | None = None,
) -> type[hx.ProviderPlugin]:
    """A provider plugin class; every instance gets a new number (visible in replies)."""
    shared = options if options is not None else {}

    class Provider(hx.ProviderPlugin):
        def init(self, ctx: hx.Context, config: Any) -> None:
            self.provider = FakeProvider(next(_instances), models, shared)

        def stop(self, ctx: hx.Context) -> None:
            self.provider.stopped = True
            if log is not None:
                log.append(("stop", name, self.provider.instance))

        def get_provider(self) -> FakeProvider:
            return self.provider

    Provider.name = name
    Provider.priority = priority
    Provider.__qualname__ = f"Provider_{name}"
    return Provider


class HeaderMiddleware:
    """Adds ``x-mw-<name>: <instance>`` to every response and records its place in the chain."""

    def __init__(self, app: Any, *, name: str, instance: int, alive: Callable[[], bool]):
        self.app = app
        self.alive = alive
        self.header = f"x-mw-{name}".encode()
        self.name = name
        self.value = str(instance).encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.alive():
            raise RuntimeError(f"middleware {self.name} used after its plugin stopped")
        trail = scope.setdefault("state", {}).setdefault("test.trail", [])
        trail.append(self.name)

        async def add_header(message: dict) -> None:
            if not self.alive():
                raise RuntimeError(f"middleware {self.name} used after its plugin stopped")
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (self.header, self.value)]}
                if self.name == trail[-1]:  # the innermost reports the whole chain
                    joined = ",".join(trail).encode()
                    message["headers"].append((b"x-chain", joined))
            await send(message)

        await self.app(scope, receive, add_header)


def header_plugin(
    name: str, *, priority: int = 0, deps: tuple[str, ...] = (), broken: bool = False
) -> type[hx.MiddlewarePlugin]:
    """A middleware plugin adding its header; ``broken`` makes get_middleware raise."""

    class Middleware(hx.MiddlewarePlugin):
        config_model = dict  # takes {"broken": ...} as it is

        def init(self, ctx: hx.Context, config: Any) -> None:
            self.instance = next(_instances)
            self.stopped = False
            self.broken = bool(config.get("broken", broken)) if isinstance(config, dict) else broken

        def get_middleware(self) -> Callable[[Any], Any]:
            if self.broken:
                raise RuntimeError("middleware misconfigured")
            return lambda app: HeaderMiddleware(
                app, name=name, instance=self.instance, alive=lambda: not self.stopped
            )

        def stop(self, ctx: hx.Context) -> None:
            self.stopped = True

    Middleware.name = name
    Middleware.priority = priority
    Middleware.dependencies = tuple(deps)
    Middleware.__qualname__ = f"Middleware_{name}"
    return Middleware


class DenyMiddleware:
    """Answers with the status named in ``x-test-deny`` (401, 403, 429), OpenAI-shaped."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            status = headers.get(b"x-test-deny")
            if status is not None:
                code = int(status)
                extra = {"Retry-After": "1"} if code == 429 else {}
                await error_response(code, f"denied with {code}", headers=extra)(
                    scope, receive, send
                )
                return
            scope.setdefault("state", {})["helixlab.claims"] = {"sub": "tester"}
        await self.app(scope, receive, send)


class DenyPlugin(hx.MiddlewarePlugin):
    name = "deny"
    priority = 100

    def get_middleware(self) -> Callable[[Any], Any]:
        return DenyMiddleware


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def explode(reason: str) -> str:
    """Always fails, to show tool errors reach the model."""
    raise ValueError(f"exploded: {reason}")


class ToolsPlugin(hx.ToolPlugin):
    name = "test-tools"

    def get_tools(self) -> list[Tool]:
        return [Tool.from_function(add), Tool.from_function(explode)]
