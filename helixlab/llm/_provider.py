"""What a provider plugin hands the gateway: the seed's LLMProvider interface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from pydantic import Field

from ._request import ChatRequest
from ._response import ChatResponse
from ._stream import StreamChunk
from ._wire import Model

__all__ = ["Provider", "ProviderCapabilities"]


class ProviderCapabilities(Model):
    """What a provider can do, so the gateway can route and refuse requests before sending."""

    supports_streaming: bool = True
    supports_tools: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    models: tuple[str, ...] = ()


@runtime_checkable
class Provider(Protocol):
    """An LLM backend. ``complete_stream`` is usually an ``async def`` generator.

    ``health_check`` returns None when healthy and raises when not, like a plugin's.
    """

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    def complete_stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]: ...

    async def health_check(self) -> None: ...

    def capabilities(self) -> ProviderCapabilities: ...
