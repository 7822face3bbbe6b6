"""A plugin's configuration checked against its ``config_model``, and durations
(``Duration`` accepts ``30s``, ``500ms``, ``2m``)."""

from __future__ import annotations

import math
import re
from collections import abc
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic
from pydantic import BeforeValidator, ConfigDict

from ..errors import ConfigError, ConfigProblem
from ._config import PluginSpec
from ._secrets import is_secret_key
from ._yaml import _join, _unknown_message

__all__ = ["Duration", "PluginConfig", "parse_duration", "validate_config"]


def validate_config(spec: PluginSpec, model: type[pydantic.BaseModel] | None) -> Any:
    """Validate a spec's config with the plugin's model: every problem at once, each at the
    line of its key (a missing key: of the plugin's entry).

    Unknown keys are refused even where pydantic would ignore them (a misspelt setting that
    does nothing is worse than an error), unless the model says ``extra="allow"``.
    ``config_model = None`` takes no keys; ``config_model = dict`` takes any mapping.
    """
    if model is dict:
        return dict(spec.config)
    if model is None:
        why = (
            f"{spec.name} has no config_model, so it takes no config; give it a config model "
            f"with this field (or `config_model = dict` to take any keys)."
        )
        problems = [_problem(spec, (key,), f"unknown key {key!r}: {why}") for key in spec.config]
        if problems:
            raise ConfigError(problems, spec.source)
        return {}
    found = _unknown_keys(model, spec.config, ())
    unknown = {loc for loc, _ in found}
    problems = [_problem(spec, loc, _unknown_message(loc[-1], keys)) for loc, keys in found]
    instance = None
    try:
        instance = model.model_validate(spec.config)
    except pydantic.ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            if error["type"] == "extra_forbidden" and loc in unknown:
                continue
            problem = _problem(spec, loc, _pydantic_message(error, loc))
            if error["type"] == "missing":
                problem = replace(problem, kind="missing")
            problems.append(problem)
    if problems:
        raise ConfigError(problems, spec.source)
    return instance


def _problem(spec: PluginSpec, loc: tuple, message: str) -> ConfigProblem:
    line = spec.line
    for end in range(len(loc), 0, -1):  # a missing key has no line: use its parent's
        if loc[:end] in spec.lines:
            line = spec.lines[loc[:end]]
            break
    return ConfigProblem(message, spec.source, line, spec.name, _join(("config", *loc)))


def _pydantic_message(error: Mapping[str, Any], loc: tuple) -> str:
    kind = error["type"]
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing." if loc else "a required key is missing."
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}."
    message = error["msg"]
    shown = error.get("input")
    secret = any(isinstance(part, str) and is_secret_key(part) for part in loc)
    if not secret and isinstance(shown, str | int | float):
        text = repr(shown)
        message += f" (got {text[:60] + '…' if len(text) > 60 else text})"
    return message + "."


def _unknown_keys(model: type[pydantic.BaseModel], data: Any, loc: tuple) -> list:
    """(loc, valid keys) of every key no field accepts, in this model and nested ones."""
    if not isinstance(data, Mapping) or model.model_config.get("extra") == "allow":
        return []
    accepted = _accepted_keys(model)
    found = []
    for key, value in data.items():
        if key not in accepted:
            found.append(((*loc, key), sorted(accepted)))
            continue
        annotation = model.model_fields[accepted[key]].annotation
        found.extend(_unknown_in(annotation, value, (*loc, key)))
    return found


def _unknown_in(annotation: Any, value: Any, loc: tuple) -> list:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _unknown_in(args[0], value, loc)
    if origin in (Union, UnionType):
        options = [a for a in args if a is not type(None)]
        return _unknown_in(options[0], value, loc) if len(options) == 1 else []
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _unknown_keys(annotation, value, loc)
    sequences = (list, tuple, set, frozenset, abc.Sequence)
    if origin in sequences and args and isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _unknown_in(args[0], item, (*loc, i))]
    if origin in (dict, abc.Mapping) and len(args) == 2 and isinstance(value, Mapping):
        return [p for k, item in value.items() for p in _unknown_in(args[1], item, (*loc, k))]
    return []


def _accepted_keys(model: type[pydantic.BaseModel]) -> dict[str, str]:
    """Every input key the model reads (names and aliases) -> its field name."""
    config = model.model_config
    by_name = config.get("validate_by_name") or config.get("populate_by_name")
    by_alias = config.get("validate_by_alias", True)
    keys: dict[str, str] = {}
    for name, info in model.model_fields.items():
        aliases = []
        alias = info.validation_alias if info.validation_alias is not None else info.alias
        for choice in getattr(alias, "choices", [alias]):
            first = getattr(choice, "path", [choice])[0]
            if isinstance(first, str):
                aliases.append(first)
        if by_alias:
            keys.update(dict.fromkeys(aliases, name))
        if not aliases or by_name:
            keys[name] = name
    return keys


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SECONDS = re.compile(rf"\s*{_NUMBER}\s*")
_DURATION = re.compile(rf"(?:\s*{_NUMBER}\s*(?:ms|s|m|h|d))+\s*")
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``500ms``, ``2m``, ``1h``, ``1m30s`` or a plain number."""
    if isinstance(value, bool):
        seconds = math.nan
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) or (isinstance(value, str) and _SECONDS.fullmatch(value)):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value))
    else:
        seconds = math.nan
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
