"""OpenAI wire dicts: shape checks whose errors name the offending field; the envelope of a
completion and of a chunk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from ._usage import Usage

M = TypeVar("M", bound=BaseModel)

#: The top-level keys of a ``chat.completion`` and of a ``chat.completion.chunk`` (the
#: others are kept as the upstream sent them, in the model's ``extra``).
TOP_KEYS = frozenset(("id", "object", "created", "model", "choices", "usage"))


class Model(BaseModel):
    """Base of every llm model: unknown keyword arguments are typos, so they are refused."""

    model_config = ConfigDict(extra="forbid")


def expect_object(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a dict, or a ValueError saying which field was not a JSON object."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a JSON object, got {_kind(value)}.")
    return dict(value)


def expect_list(value: Any, where: str) -> list[Any]:
    """``value`` as a list, or a ValueError saying which field was not a JSON array."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where} must be a JSON array, got {_kind(value)}.")
    return list(value)


def expect_kind(data: Mapping[str, Any], kind: str, where: str) -> None:
    """A ValueError unless ``data["object"]`` is ``kind`` (or absent)."""
    if data.get("object", kind) != kind:
        raise ValueError(f"{where}.object must be {kind!r}, got {data.get('object')!r}.")


def envelope(
    kind: str,
    *,
    id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    extra: Mapping[str, Any],
    usage: Usage | None,
) -> dict[str, Any]:
    """A ``chat.completion`` or ``chat.completion.chunk`` (``kind``) object, as OpenAI sends
    it: the named keys, then ``extra``, then the usage when there is one."""
    data: dict[str, Any] = {
        "id": id,
        "object": kind,
        "created": created,
        "model": model,
        "choices": choices,
    }
    data.update(extra)
    if usage is not None:
        data["usage"] = usage.to_openai()
    return data


def build(model: type[M], data: Mapping[str, Any], where: str) -> M:
    """Validate ``data`` into ``model``; errors are one ValueError listing every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_path(where, err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False)
        )
        raise ValueError(f"Invalid {problems}.") from exc


def _path(where: str, loc: tuple[int | str, ...]) -> str:
    path = where
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return names.get(type(value), type(value).__name__)
