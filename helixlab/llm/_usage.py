"""Token usage, as OpenAI reports it and as rate limiters and cost logs count it."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ._wire import Model, build, expect_object

__all__ = ["Usage"]

_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


class Usage(Model):
    """Prompt, completion and total tokens; ``total_tokens`` defaults to the sum of the two.

    ``extra`` keeps what else the upstream reported (``prompt_tokens_details`` with cached
    tokens, ``completion_tokens_details`` with reasoning tokens, ...): clients such as
    LangChain read them, so the gateway passes them on.
    """

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    extra: dict[str, Any] = Field(default_factory=dict)

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
            extra=_add_counts(self.extra, other.extra),
        )

    def to_openai(self) -> dict[str, Any]:
        """The ``usage`` object of a completion or of the last stream chunk."""
        data: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return data

    @classmethod
    def from_openai(cls, data: Any, where: str = "usage") -> Usage:
        """Parse a ``usage`` object; detail breakdowns (cached tokens, ...) go to ``extra``."""
        data = expect_object(data, where)
        fields: dict[str, Any] = {k: data[k] for k in _COUNTS if k in data}
        extra = {k: v for k, v in data.items() if k not in _COUNTS}
        if extra:
            fields["extra"] = extra
        return build(Usage, fields, where)


def _add_counts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two usage breakdowns added key by key (numbers summed, nested objects recursively)."""
    if not b:
        return dict(a)
    total = dict(a)
    for key, value in b.items():
        mine = total.get(key)
        if isinstance(mine, dict) and isinstance(value, dict):
            total[key] = _add_counts(mine, value)
        elif _is_count(mine) and _is_count(value):
            total[key] = mine + value
        elif key not in total:
            total[key] = value
    return total


def _is_count(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
