"""Chat messages: the conversation a request carries, in OpenAI's roles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from ._tools import ToolCall
from ._wire import Model, build, expect_list, expect_object

__all__ = ["Message", "Role"]

Role = Literal["system", "developer", "user", "assistant", "tool"]
_SIMPLE = ("role", "content", "name", "tool_call_id")
_KNOWN = frozenset((*_SIMPLE, "tool_calls"))


class Message(Model):
    """One turn of a conversation.

    ``content`` is text, or OpenAI content parts (``[{"type": "text", "text": ...}, ...]``);
    only an assistant message that calls tools may leave it empty. ``extra`` keeps the keys
    this model does not name (``refusal``, ``annotations``, ``audio``, ...), so they reach
    the other side unchanged.
    """

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs the tool_call_id it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {self.role!r}")
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role!r} message needs content")
        return self

    @property
    def text(self) -> str:
        """The message's text: ``content`` itself, or its text parts joined; '' when empty."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message."""
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str | None = None, tool_calls: Sequence[ToolCall] = ()) -> Message:
        """An assistant message: text, tool calls, or both."""
        return cls(role="assistant", content=content, tool_calls=list(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> Message:
        """A tool result, answering the tool call ``tool_call_id``."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id)

    def to_openai(self) -> dict[str, Any]:
        """The ``messages[]`` entry; unset optional fields are left out."""
        # keys with nothing in them (the ``refusal: null`` of a reply sent back) are left out
        data: dict[str, Any] = {k: v for k, v in self.extra.items() if v not in (None, [], {})}
        data["role"] = self.role
        data["content"] = self.content
        if self.name is not None:
            data["name"] = self.name
        if self.tool_calls:
            data["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data

    @classmethod
    def from_openai(cls, data: Any, where: str = "message") -> Message:
        """Parse a ``messages[]`` entry; keys this model does not know (refusal, audio) go to
        ``extra``."""
        data = expect_object(data, where)
        fields = {k: data[k] for k in _SIMPLE if k in data}
        extra = {k: v for k, v in data.items() if k not in _KNOWN}
        if extra:
            fields["extra"] = extra
        if data.get("tool_calls") is not None:
            calls = expect_list(data["tool_calls"], f"{where}.tool_calls")
            fields["tool_calls"] = [
                ToolCall.from_openai(call, f"{where}.tool_calls[{i}]")
                for i, call in enumerate(calls)
            ]
        return build(Message, fields, where)
