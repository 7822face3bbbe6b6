"""Streaming: chunks as they arrive, and folding them back into one response."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any

from pydantic import Field

from ._response import ChatResponse
from ._tools import ToolCall
from ._usage import Usage
from ._wire import TOP_KEYS, Model, build, envelope, expect_kind, expect_list, expect_object

__all__ = ["StreamAccumulator", "StreamChunk", "ToolCallDelta", "aaccumulate", "accumulate"]


_DELTA = frozenset(("role", "content", "tool_calls"))
_CHOICE = frozenset(("index", "delta", "logprobs", "finish_reason"))


class ToolCallDelta(Model):
    """A piece of a streamed tool call: the first piece for an ``index`` carries its id and
    name, later pieces carry fragments of the arguments JSON."""

    index: int = Field(ge=0)
    id: str | None = None
    name: str | None = None
    arguments: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """A ``delta.tool_calls[]`` entry."""
        data: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            data["id"] = self.id
            data["type"] = "function"
        function: dict[str, str] = {}
        if self.name is not None:
            function["name"] = self.name
        if self.arguments is not None:
            function["arguments"] = self.arguments
        if function:
            data["function"] = function
        return data

    @classmethod
    def from_openai(cls, data: Any, where: str = "tool_call_delta") -> ToolCallDelta:
        """Parse a ``delta.tool_calls[]`` entry."""
        data = expect_object(data, where)
        function = expect_object(data.get("function") or {}, f"{where}.function")
        fields = {
            "index": data.get("index"),
            "id": data.get("id"),
            "name": function.get("name"),
            "arguments": function.get("arguments"),
        }
        return build(ToolCallDelta, fields, where)


class StreamChunk(Model):
    """One ``chat.completion.chunk``: a content delta, tool-call deltas, the finish reason, or
    (last, when ``include_usage`` was asked for) the usage.

    ``id``, ``model`` and ``created`` are filled when parsed from the wire; a provider building
    chunks may leave them to ``to_openai``'s arguments.

    ``index`` is the choice the delta belongs to (``n`` > 1 streams every choice). What this
    model does not name is kept as the upstream sent it, as in ChatResponse: ``logprobs``,
    ``delta_extra`` (``refusal``, ...), ``choice_extra``, further choices of the same chunk
    in ``more_choices``, top-level keys (``system_fingerprint``, ...) in ``extra``.
    """

    content: str | None = None
    role: str | None = None
    tool_calls: list[ToolCallDelta] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    id: str | None = None
    model: str | None = None
    created: int | None = None
    index: int = Field(default=0, ge=0)
    logprobs: dict[str, Any] | None = None
    delta_extra: dict[str, Any] = Field(default_factory=dict)
    choice_extra: dict[str, Any] = Field(default_factory=dict)
    more_choices: list[dict[str, Any]] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    def to_openai(
        self, id: str | None = None, model: str | None = None, created: int | None = None
    ) -> dict[str, Any]:
        """A ``chat.completion.chunk`` object; arguments override the chunk's own provenance.

        A usage-only chunk has an empty ``choices`` list, as OpenAI sends it.
        """
        id = id if id is not None else self.id
        model = model if model is not None else self.model
        created = created if created is not None else self.created
        if id is None or model is None:
            raise ValueError("StreamChunk.to_openai needs an id and a model.")
        choices: list[dict[str, Any]] = []
        if (
            self.role
            or self.content is not None
            or self.tool_calls
            or self.finish_reason
            or self.delta_extra
            or self.logprobs is not None
        ):
            delta: dict[str, Any] = {}
            if self.role:
                delta["role"] = self.role
            if self.content is not None:
                delta["content"] = self.content
            delta.update(self.delta_extra)
            if self.tool_calls:
                delta["tool_calls"] = [call.to_openai() for call in self.tool_calls]
            choice = {"index": self.index, "delta": delta, "logprobs": self.logprobs}
            choice.update(self.choice_extra)
            choice["finish_reason"] = self.finish_reason
            choices.append(choice)
        return envelope(
            "chat.completion.chunk",
            id=id,
            created=created or 0,
            model=model,
            choices=[*choices, *self.more_choices],
            extra=self.extra,
            usage=self.usage,
        )

    @classmethod
    def from_openai(cls, data: Any) -> StreamChunk:
        """Parse a ``chat.completion.chunk``: its first choice, if any, typed; the rest kept."""
        data = expect_object(data, "chunk")
        expect_kind(data, "chat.completion.chunk", "chunk")
        fields: dict[str, Any] = {k: data[k] for k in ("id", "model", "created") if k in data}
        choices = expect_list(data.get("choices") or [], "chunk.choices")
        if choices:
            choice = expect_object(choices[0], "chunk.choices[0]")
            delta = expect_object(choice.get("delta") or {}, "chunk.choices[0].delta")
            fields["role"] = delta.get("role")
            fields["content"] = delta.get("content")
            fields["finish_reason"] = choice.get("finish_reason")
            fields["index"] = choice.get("index") or 0
            fields["logprobs"] = choice.get("logprobs")
            fields["delta_extra"] = {k: v for k, v in delta.items() if k not in _DELTA}
            fields["choice_extra"] = {k: v for k, v in choice.items() if k not in _CHOICE}
            fields["more_choices"] = choices[1:]
            calls = expect_list(delta.get("tool_calls") or [], "chunk.choices[0].delta.tool_calls")
            fields["tool_calls"] = [
                ToolCallDelta.from_openai(call, f"chunk.choices[0].delta.tool_calls[{i}]")
                for i, call in enumerate(calls)
            ]
        if data.get("usage") is not None:
            fields["usage"] = Usage.from_openai(data["usage"], "chunk.usage")
        fields["extra"] = {k: v for k, v in data.items() if k not in TOP_KEYS}
        return build(StreamChunk, fields, "chunk")


class StreamAccumulator:
    """Folds chunks, as they pass, into the response they add up to.

    A gateway feeds it while relaying a stream, then logs or caches ``response()``.
    """

    def __init__(self) -> None:
        self._content: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish_reason = ""
        self._usage: Usage | None = None
        self._meta: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}

    def add(self, chunk: StreamChunk) -> None:
        """Take one chunk into account."""
        for key in ("id", "model", "created"):
            value = getattr(chunk, key)
            if value is not None and key not in self._meta:
                self._meta[key] = value
        for key, value in chunk.extra.items():
            self._extra.setdefault(key, value)
        if chunk.usage is not None:
            self._usage = chunk.usage
        if chunk.index != 0:  # the response is the first choice; others are not folded
            return
        if chunk.content is not None:
            self._content.append(chunk.content)
        for delta in chunk.tool_calls:
            call = self._calls.setdefault(delta.index, {"id": None, "name": None, "arguments": []})
            call["id"] = call["id"] or delta.id
            call["name"] = call["name"] or delta.name
            if delta.arguments:
                call["arguments"].append(delta.arguments)
        if chunk.finish_reason:
            self._finish_reason = chunk.finish_reason

    def response(self, model: str | None = None) -> ChatResponse:
        """The response so far; ``model`` is used if no chunk named one.

        Raises ValueError if a tool call never received its id or name.
        """
        calls = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call["id"] or not call["name"]:
                missing = "id" if not call["id"] else "name"
                raise ValueError(
                    f"Streamed tool call at index {index} never received its {missing}."
                )
            calls.append(
                ToolCall(id=call["id"], name=call["name"], arguments="".join(call["arguments"]))
            )
        meta = dict(self._meta)
        if model is not None:
            meta.setdefault("model", model)
        if "model" not in meta:
            raise ValueError("No chunk named the model; pass model= to response().")
        text = "".join(self._content)
        content = text if text or not calls else None
        return ChatResponse(
            content=content,
            tool_calls=calls,
            usage=self._usage,
            finish_reason=self._finish_reason,
            extra=self._extra,
            **meta,
        )


def accumulate(chunks: Iterable[StreamChunk], model: str | None = None) -> ChatResponse:
    """The ChatResponse a stream of chunks adds up to (content joined, tool calls by index)."""
    acc = StreamAccumulator()
    for chunk in chunks:
        acc.add(chunk)
    return acc.response(model)


async def aaccumulate(chunks: AsyncIterable[StreamChunk], model: str | None = None) -> ChatResponse:
    """Async twin of :func:`accumulate`, for a provider's ``complete_stream()``."""
    acc = StreamAccumulator()
    async for chunk in chunks:
        acc.add(chunk)
    return acc.response(model)
