"""The chat-completions request, with OpenAI fields this model does not name kept in ``extra``."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from ._messages import Message
from ._tools import ToolDefinition
from ._wire import Model, build, expect_list, expect_object

__all__ = ["ChatRequest"]

_TOOL_CHOICES = ("none", "auto", "required")
_NAMED = ("model", "messages", "temperature", "max_tokens", "stream", "tools", "tool_choice")
_KNOWN = frozenset((*_NAMED, "stream_options"))


class ChatRequest(Model):
    """A chat-completions request as providers and middleware see it.

    Fields the gateway acts on are typed; every other OpenAI field (``top_p``, ``stop``,
    ``seed``, ``response_format``, ...) rides along untouched in ``extra`` so a provider can
    forward it. ``stream_options`` holds the stream options besides ``include_usage``
    (which is typed, since the gateway acts on it), forwarded with it.
    """

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    include_usage: bool = False
    stream_options: dict[str, Any] = Field(default_factory=dict)
    tools: list[ToolDefinition] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    #: What the gateway knows of the caller: ``claims`` (set by custom-auth) and ``client``.
    #: For providers to read; never part of the wire format, never sent upstream.
    context: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, choice: str | dict[str, Any] | None) -> Any:
        if choice is None:
            return None
        if isinstance(choice, str):
            if choice not in _TOOL_CHOICES:
                raise ValueError(f"tool_choice {choice!r} is not one of {', '.join(_TOOL_CHOICES)}")
            return choice
        function = choice.get("function")
        if choice.get("type") != "function" or not isinstance(function, dict):
            raise ValueError('a tool_choice object must be {"type": "function", "function": {...}}')
        if not isinstance(function.get("name"), str):
            raise ValueError("tool_choice.function.name must be a string")
        return choice

    @model_validator(mode="after")
    def _check_extra(self) -> ChatRequest:
        clash = sorted(_KNOWN & self.extra.keys())
        if clash:
            raise ValueError(f"extra must not repeat named fields: {', '.join(clash)}")
        return self

    @property
    def forced_tool(self) -> str | None:
        """The tool name ``tool_choice`` forces, if it names one."""
        if isinstance(self.tool_choice, dict):
            return self.tool_choice["function"]["name"]
        return None

    def to_openai(self) -> dict[str, Any]:
        """The JSON body to POST to ``/chat/completions``."""
        data: dict[str, Any] = dict(self.extra)
        data["model"] = self.model
        data["messages"] = [message.to_openai() for message in self.messages]
        if self.temperature is not None:
            data["temperature"] = self.temperature
        if self.max_tokens is not None:
            data["max_tokens"] = self.max_tokens
        if self.stream:
            data["stream"] = True
            if self.include_usage:
                data["stream_options"] = {**self.stream_options, "include_usage": True}
            elif self.stream_options:
                data["stream_options"] = dict(self.stream_options)
        if self.tools:
            data["tools"] = [tool.to_openai() for tool in self.tools]
        if self.tool_choice is not None:
            data["tool_choice"] = self.tool_choice
        return data

    @classmethod
    def from_openai(cls, data: Any) -> ChatRequest:
        """Parse a request body; a ValueError names the first field that is not OpenAI-shaped."""
        data = expect_object(data, "request")
        if "messages" not in data:
            raise ValueError("request.messages is required.")
        fields: dict[str, Any] = {k: data[k] for k in _NAMED if data.get(k) is not None}
        fields["messages"] = [
            Message.from_openai(message, f"request.messages[{i}]")
            for i, message in enumerate(expect_list(data["messages"], "request.messages"))
        ]
        if data.get("tools") is not None:
            fields["tools"] = [
                ToolDefinition.from_openai(tool, f"request.tools[{i}]")
                for i, tool in enumerate(expect_list(data["tools"], "request.tools"))
            ]
        if data.get("stream_options") is not None:
            options = expect_object(data["stream_options"], "request.stream_options")
            fields["include_usage"] = options.pop("include_usage", False)
            fields["stream_options"] = options
        fields["extra"] = {k: v for k, v in data.items() if k not in _KNOWN}
        return build(ChatRequest, fields, "request")
