"""The completed chat response, and the seed's calculateConfidence."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from pydantic import Field, model_validator

from ._messages import Message
from ._tools import ToolCall
from ._usage import Usage
from ._wire import TOP_KEYS, Model, build, envelope, expect_kind, expect_list, expect_object

__all__ = ["ChatResponse", "confidence_from_logprobs"]


_CHOICE = frozenset(("index", "message", "logprobs", "finish_reason"))


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _now() -> int:
    return int(time.time())


def confidence_from_logprobs(logprobs: Any) -> float | None:
    """How sure the model was: the geometric-mean token probability, in [0, 1].

    ``logprobs`` is a choice's ``logprobs`` object (``{"content": [{"logprob": ...}, ...]}``).
    None when the upstream sent no token logprobs: an invented number would mislead.
    """
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    values = [
        item["logprob"]
        for item in logprobs["content"]
        if isinstance(item, dict) and isinstance(item.get("logprob"), int | float)
    ]
    if not values:
        return None
    return min(1.0, math.exp(sum(values) / len(values)))


class ChatResponse(Model):
    """A finished assistant reply: text and/or tool calls, with usage and provenance.

    ``finish_reason`` defaults to ``"tool_calls"`` when there are tool calls, else ``"stop"``.
    ``confidence`` is not part of the OpenAI format, so ``to_openai`` does not carry it.

    A gateway passes on what the upstream said unless a plugin changes it, so what this
    model does not name is kept: ``logprobs`` of the first choice, the other keys of its
    message (``refusal``, ``annotations``, ...) in ``message_extra`` and of the choice in
    ``choice_extra``, the other choices (``n`` > 1) as sent in ``more_choices``, and the
    other top-level keys (``system_fingerprint``, ``service_tier``, ...) in ``extra``.
    """

    content: str | None = None
    model: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str = ""
    confidence: float | None = Field(default=None, ge=0, le=1)
    id: str = Field(default_factory=_new_id)
    created: int = Field(default_factory=_now)
    logprobs: dict[str, Any] | None = None
    message_extra: dict[str, Any] = Field(default_factory=dict)
    choice_extra: dict[str, Any] = Field(default_factory=dict)
    more_choices: list[dict[str, Any]] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_finish_reason(self) -> ChatResponse:
        if not self.finish_reason:
            self.finish_reason = "tool_calls" if self.tool_calls else "stop"
        return self

    @property
    def message(self) -> Message:
        """The reply as an assistant message, ready to append to the conversation."""
        return Message.assistant(self.content, self.tool_calls)

    def to_openai(self) -> dict[str, Any]:
        """A complete ``chat.completion`` object, as the OpenAI API returns it."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        message.update(self.message_extra)
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": self.logprobs}
        choice.update(self.choice_extra)
        choice["finish_reason"] = self.finish_reason
        return envelope(
            "chat.completion",
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[choice, *self.more_choices],
            extra=self.extra,
            usage=self.usage,
        )

    @classmethod
    def from_openai(cls, data: Any) -> ChatResponse:
        """Parse a ``chat.completion`` object; confidence from the first choice's logprobs."""
        data = expect_object(data, "response")
        expect_kind(data, "chat.completion", "response")
        choices = expect_list(data.get("choices"), "response.choices")
        if not choices:
            raise ValueError("response.choices must not be empty.")
        choice = expect_object(choices[0], "response.choices[0]")
        message = Message.from_openai(choice.get("message"), "response.choices[0].message")
        logprobs = choice.get("logprobs")
        fields: dict[str, Any] = {
            "content": message.text if message.content is not None else None,
            "model": data.get("model"),
            "tool_calls": message.tool_calls,
            "finish_reason": choice.get("finish_reason") or "",
            "confidence": confidence_from_logprobs(logprobs),
            "logprobs": logprobs,
            "message_extra": message.extra,
            "choice_extra": {k: v for k, v in choice.items() if k not in _CHOICE},
            "more_choices": choices[1:],
            "extra": {k: v for k, v in data.items() if k not in TOP_KEYS},
        }
        for key in ("id", "created"):
            if data.get(key) is not None:
                fields[key] = data[key]
        if data.get("usage") is not None:
            fields["usage"] = Usage.from_openai(data["usage"], "response.usage")
        return build(ChatResponse, fields, "response")
