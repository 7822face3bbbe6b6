"""What the mock says: deterministic replies, tool calls and token counts for a request.

Pure functions of the request (and a scripted reply, if one is queued), so the same
conversation always gets the same answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from helixlab.llm import ChatRequest, Message, ToolCall, ToolDefinition, Usage

__all__ = ["Reply", "count_tokens", "make_reply", "split_words"]

_WORDS = re.compile(r"\S+\s*")


@dataclass
class Reply:
    """The assistant turn the mock will send, before it is framed as JSON or SSE."""

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)


def count_tokens(text: str) -> int:
    """Tokens, as the mock counts them: whitespace-separated words."""
    return len(text.split())


def make_reply(
    request: ChatRequest,
    scripted: str | ToolCall | None,
    next_call_id: Callable[[], str],
) -> Reply:
    """The reply to ``request``: the scripted one if given, else a tool result summary, a tool
    call, or an echo of the last user message — in that order.

    An offered tool is called when the last user message names it (``get_weather``,
    ``get weather``) or uses a word its name is about ("What is the weather in Paris?"
    calls ``get_weather``; see :func:`topic_words`), or when ``tool_choice`` requires it.
    """
    calls: list[ToolCall] = []
    content: str | None
    if isinstance(scripted, ToolCall):
        calls = [scripted]
        content = None
    elif scripted is not None:
        content = scripted
    elif request.messages[-1].role == "tool":
        content = _summarise_tool_results(request.messages)
    else:
        text = _last_user_text(request.messages)
        tool = _choose_tool(request, text)
        if tool is None:
            content = f"Echo: {text}"
        else:
            arguments = json.dumps(_arguments(tool, text))
            calls = [ToolCall(id=next_call_id(), name=tool.name, arguments=arguments)]
            content = None
    finish_reason = "tool_calls" if calls else "stop"
    if content is not None and request.max_tokens is not None:
        words = _WORDS.findall(content)
        if len(words) > request.max_tokens:
            content = "".join(words[: request.max_tokens]).rstrip()
            finish_reason = "length"
    completion = count_tokens(content or "") + sum(
        1 + count_tokens(call.arguments) for call in calls
    )
    return Reply(
        content=content,
        tool_calls=calls,
        finish_reason=finish_reason,
        usage=Usage(prompt_tokens=_prompt_tokens(request), completion_tokens=completion),
    )


def split_words(text: str) -> list[str]:
    """``text`` in word-sized pieces (each keeping its trailing space) that join back to it."""
    return _WORDS.findall(text) or [text]


def _prompt_tokens(request: ChatRequest) -> int:
    total = 0
    for message in request.messages:
        total += count_tokens(message.text)
        total += sum(1 + count_tokens(call.arguments) for call in message.tool_calls)
    return total


def _last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text
    return ""


def _summarise_tool_results(messages: list[Message]) -> str:
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    results = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        name = names.get(message.tool_call_id or "", "tool")
        results.append(f"The {name} tool returned: {message.text}")
    return " ".join(reversed(results))


def _choose_tool(request: ChatRequest, text: str) -> ToolDefinition | None:
    if not request.tools or request.tool_choice == "none":
        return None
    if request.forced_tool is not None:
        return next((t for t in request.tools if t.name == request.forced_tool), None)
    lowered = text.lower()
    for tool in request.tools:
        name = tool.name.lower()
        if name in lowered or name.replace("_", " ").replace("-", " ") in lowered:
            return tool
    said = {word.removesuffix("s") for word in re.findall(r"[a-z0-9]+", lowered)}
    for tool in request.tools:  # "What is the weather in Paris?" calls get_weather
        if said & topic_words(tool.name):
            return tool
    return request.tools[0] if request.tool_choice == "required" else None


#: Words of a tool's name that say what it does, not what it is about.
_GENERIC = frozenset(
    {"get", "set", "fetch", "list", "run", "call", "make", "tool", "api", "lookup", "look"}
    | {"find", "query", "read", "the", "for", "current"}
)


def topic_words(name: str) -> set[str]:
    """What a tool's name is about: ``get_weather`` -> {"weather"}, ``convertCurrency`` ->
    {"convert", "currency"}. A prompt using one of these words calls the tool."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = {w.lower().removesuffix("s") for w in re.findall(r"[A-Za-z0-9]+", spaced)}
    return {w for w in words if len(w) >= 3 and w not in _GENERIC}


def _arguments(tool: ToolDefinition, text: str) -> dict[str, Any]:
    """Arguments for ``tool``: ``key=value`` / ``key: value`` from the message when present,
    else a placeholder for each required property (the message's last word for strings)."""
    properties: dict[str, Any] = tool.parameters.get("properties", {})
    required = tool.parameters.get("required", list(properties))
    words = [w for w in re.findall(r"[\w'-]+", text) if w.lower() != tool.name.lower()]
    args: dict[str, Any] = {}
    for name, schema in properties.items():
        explicit = _explicit_value(text, name)
        if explicit is not None:
            args[name] = _coerce(explicit, schema)
        elif name in required:
            args[name] = _placeholder(schema, words[-1] if words else "")
    return args


def _explicit_value(text: str, name: str) -> str | None:
    pattern = rf"\b{re.escape(name)}\s*[=:]\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s,;]+))"
    match = re.search(pattern, text)
    if match is None:
        return None
    quoted = match.group(1) if match.group(1) is not None else match.group(2)
    return quoted if quoted is not None else match.group(3).rstrip(".!?")


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean":
        return value.lower() in ("true", "yes", "1")
    return value


def _placeholder(schema: dict[str, Any], last_word: str) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    placeholders = {"integer": 0, "number": 0, "boolean": False, "array": [], "object": {}}
    return placeholders.get(str(schema.get("type")), last_word)
