"""Tools: what a model is offered (ToolDefinition), what it asks for (ToolCall), and what runs
(Tool)."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field, create_model, field_validator

from ._wire import Model, build, expect_object

__all__ = ["Tool", "ToolCall", "ToolDefinition"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _empty_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


class ToolDefinition(Model):
    """A function the model may call: its name, what it is for, and a JSON schema of arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=_empty_schema)

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(
                f"tool name {name!r} must be 1-64 letters, digits, underscores or hyphens"
            )
        return name

    @field_validator("parameters")
    @classmethod
    def _check_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        if parameters.get("type", "object") != "object":
            raise ValueError(f"parameters must be a JSON schema of type 'object', got {parameters}")
        return parameters

    def to_openai(self) -> dict[str, Any]:
        """The ``tools[]`` entry of a chat-completions request."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}

    @classmethod
    def from_openai(cls, data: Any, where: str = "tool") -> ToolDefinition:
        """Parse a ``tools[]`` entry; only ``"type": "function"`` tools exist in this format."""
        data = expect_object(data, where)
        if data.get("type", "function") != "function":
            raise ValueError(f"{where}.type must be 'function', got {data.get('type')!r}.")
        function = expect_object(data.get("function"), f"{where}.function")
        fields: dict[str, Any] = {
            k: function[k] for k in ("name", "description", "parameters") if k in function
        }
        if fields.get("description") is None:
            fields.pop("description", None)
        if fields.get("parameters") is None:
            fields.pop("parameters", None)
        return build(ToolDefinition, fields, f"{where}.function")


class ToolCall(Model):
    """One call the model asked for; ``arguments`` stays the JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"

    @field_validator("arguments", mode="before")
    @classmethod
    def _encode_arguments(cls, value: Any) -> Any:
        # Hand-built calls may pass a dict; the wire format carries a JSON string.
        return json.dumps(value) if isinstance(value, Mapping) else value

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; ValueError if the model wrote anything but a JSON object."""
        return _parse_arguments(self.arguments, f"tool call {self.id!r} ({self.name})")

    def to_openai(self) -> dict[str, Any]:
        """The ``tool_calls[]`` entry of an assistant message."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    @classmethod
    def from_openai(cls, data: Any, where: str = "tool_call") -> ToolCall:
        """Parse a ``tool_calls[]`` entry of an assistant message."""
        data = expect_object(data, where)
        function = expect_object(data.get("function"), f"{where}.function")
        fields = {"id": data.get("id"), "name": function.get("name")}
        if function.get("arguments") is not None:
            fields["arguments"] = function["arguments"]
        return build(ToolCall, fields, where)


class Tool(ToolDefinition):
    """A ToolDefinition plus the callable that runs it; usable wherever a definition is.

    >>> def add(a: int, b: int) -> int:
    ...     "Add two integers."
    ...     return a + b
    >>> tool = Tool.from_function(add)
    >>> tool.definition.parameters["required"]
    ['a', 'b']
    """

    fn: Callable[..., Any] = Field(exclude=True)

    @property
    def definition(self) -> ToolDefinition:
        """The part a model sees: name, description and parameters, without the callable."""
        return ToolDefinition(
            name=self.name, description=self.description, parameters=self.parameters
        )

    async def invoke(self, arguments: Mapping[str, Any] | str | None = None) -> Any:
        """Run the tool with a model's arguments (a dict or JSON text) and return its result.

        A coroutine function is awaited; a plain function runs in a worker thread so a slow
        tool never blocks the event loop.
        """
        if isinstance(arguments, str):
            args = _parse_arguments(arguments, f"tool {self.name!r}")
        else:
            args = dict(arguments or {})
        missing = [key for key in self.parameters.get("required", ()) if key not in args]
        if missing:
            raise ValueError(
                f"Tool {self.name!r} is missing required argument(s): {', '.join(missing)}."
            )
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**args)
        result = await asyncio.to_thread(self.fn, **args)
        return await result if inspect.isawaitable(result) else result

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool:
        """A Tool whose schema comes from ``fn``'s signature and description from its docstring."""
        fields: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = Any if param.annotation is param.empty else param.annotation
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (annotation, default)
        schema = create_model(f"{fn.__name__}_arguments", **fields).model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        doc = inspect.getdoc(fn) or ""
        return cls(
            name=name or fn.__name__,
            description=description if description is not None else doc.split("\n\n")[0],
            parameters=schema,
            fn=fn,
        )


def _parse_arguments(text: str, subject: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"Arguments of {subject} are not valid JSON: {exc}.") from exc
    if not isinstance(value, dict):
        raise ValueError(f"Arguments of {subject} must be a JSON object, got {text!r}.")
    return value
