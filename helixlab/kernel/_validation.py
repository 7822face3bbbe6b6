"""A plugin's configuration checked against its ``config_model``, every problem at once at
the line of its key; ``Duration`` (``30s``, ``500ms``, ``2m``) and ``PluginConfig``."""

from __future__ import annotations

import math
import re
from collections import abc
from datetime import timedelta
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic
from pydantic import BeforeValidator, ConfigDict

from ..errors import ConfigError, ConfigProblem
from ._config import PluginSpec, _unknown_message
from ._secrets import field_aliases, is_secret_key

__all__ = ["Duration", "PluginConfig", "parse_duration", "validate_config"]


def validate_config(spec: PluginSpec, model: type[pydantic.BaseModel] | None) -> Any:
    """A spec's config validated by the plugin's model, or every problem at the line of its key.
    Unknown keys are refused even where pydantic ignores them (a misspelt setting that does
    nothing is worse) unless ``extra="allow"``; ``config_model = None`` takes none, ``dict`` any."""
    if model is dict:
        return dict(spec.config)
    found: list[tuple[tuple, str, str]] = []  # (key path, message, kind)
    instance = None
    if model is None:
        why = f"{spec.name} has no config_model, so it takes no config; give it a config model "
        why += "with this field (or `config_model = dict` to take any keys)."
        found = [((key,), f"unknown key {key!r}: {why}", "") for key in spec.config]
    else:
        unknown = dict(_unknown_keys(model, spec.config, ()))
        found = [(loc, _unknown_message(loc[-1], keys), "") for loc, keys in unknown.items()]
        try:
            instance = model.model_validate(spec.config)
        except pydantic.ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc, kind = tuple(error["loc"]), error["type"]
                if kind == "missing":
                    key = f"required key {loc[-1]!r}" if loc else "a required key"
                    found.append((loc, f"{key} is missing.", "missing"))
                elif kind == "extra_forbidden":
                    if loc not in unknown:
                        found.append((loc, f"unknown key {loc[-1]!r}.", ""))
                else:
                    shown, message = repr(error.get("input")), error["msg"]
                    secret = any(isinstance(part, str) and is_secret_key(part) for part in loc)
                    if not secret and isinstance(error.get("input"), str | int | float):
                        message += f" (got {shown[:60] + '…' if len(shown) > 60 else shown})"
                    found.append((loc, message + ".", ""))
    problems = []
    for loc, message, kind in found:  # a missing key has no line: its parent's, or the entry's
        ends = (loc[:end] for end in range(len(loc), 0, -1) if loc[:end] in spec.lines)
        line = spec.lines[end] if (end := next(ends, None)) is not None else spec.line
        path = ".".join(str(part) for part in ("config", *loc))
        problems.append(ConfigProblem(message, spec.source, line, spec.name, path, kind))
    if problems:
        raise ConfigError(problems, spec.source)
    return {} if model is None else instance


def _unknown_keys(annotation: Any, value: Any, loc: tuple) -> list[tuple[tuple, list[str]]]:
    """(key path, valid keys) of every key no field accepts, in the models ``annotation``
    holds (``X | None``, ``list[X]``, ``dict[str, X]``, ``Annotated[X, ...]``)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated or origin in (Union, UnionType):  # Annotated[X, ...], X | None
        options = [a for a in args[: 1 if origin is Annotated else None] if a is not type(None)]
        return _unknown_keys(options[0], value, loc) if len(options) == 1 else []
    if isinstance(value, list | tuple) and args and origin in (list, tuple, abc.Sequence):
        return [p for i, v in enumerate(value) for p in _unknown_keys(args[0], v, (*loc, i))]
    if origin in (dict, abc.Mapping) and len(args) == 2 and isinstance(value, abc.Mapping):
        return [p for k, v in value.items() for p in _unknown_keys(args[1], v, (*loc, k))]
    if not (isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)):
        return []
    config = annotation.model_config
    if not isinstance(value, abc.Mapping) or config.get("extra") == "allow":
        return []
    accepted: dict[str, str] = {}  # every input key the model reads (names, aliases) -> field
    for name, info in annotation.model_fields.items():
        aliases = field_aliases(info)
        if config.get("validate_by_alias", True):
            accepted.update(dict.fromkeys(aliases, name))
        if not aliases or config.get("validate_by_name") or config.get("populate_by_name"):
            accepted[name] = name
    found = []
    for key, item in value.items():
        if key in accepted:
            field = annotation.model_fields[accepted[key]]
            found += _unknown_keys(field.annotation, item, (*loc, key))
        else:
            found.append(((*loc, key), sorted(accepted)))
    return found


_NUMBER, _UNIT = r"(\d+(?:\.\d*)?|\.\d+)\s*", "(ms|s|m|h|d)"
_DURATION = re.compile(rf"\s*{_NUMBER}|(?:\s*{_NUMBER}{_UNIT})+\s*")  # a number, or parts
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``500ms``, ``2m``, ``1h``, ``1m30s`` or a plain number."""
    seconds = math.nan
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(_NUMBER + _UNIT + "?", value))
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(
            f"invalid duration {value!r}; use a non-negative number of seconds or a string "
            f"such as '30s', '500ms', '2m', '1h' or '1m30s'."
        )
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class PluginConfig(pydantic.BaseModel):
    """Base for plugin config models: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid")
