"""Token usage, as OpenAI reports it and as rate limiters and cost logs count it."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ._wire import Model, build, expect_object

__all__ = ["Usage"]


class Usage(Model):
    """Prompt, completion and total tokens; ``total_tokens`` defaults to the sum of the two."""

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _default_total(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("total_tokens") is None:
            data = dict(data)
            data["total_tokens"] = int(data.get("prompt_tokens") or 0) + int(
                data.get("completion_tokens") or 0
            )
        return data

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )

    def to_openai(self) -> dict[str, int]:
        """The ``usage`` object of a completion or of the last stream chunk."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_openai(cls, data: Any, where: str = "usage") -> Usage:
        """Parse a ``usage`` object; detail breakdowns (cached tokens, ...) are dropped."""
        data = expect_object(data, where)
        keys = ("prompt_tokens", "completion_tokens", "total_tokens")
        return build(Usage, {k: data[k] for k in keys if k in data}, where)
