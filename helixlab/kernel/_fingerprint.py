"""Fingerprints: what a plugin's definition is matched on, so that a re-run reloads what changed.

A fingerprint is a digest per *part* (a name the plugin's code reaches: ``helixlab.sources``
finds them in a cell or a file), so a change is named ("TokenBucket changed"); given a class
alone, its attributes and its methods' code are digested.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["Fingerprint", "class_fingerprint", "value_digest"]


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """A digest per part a plugin reaches; equal fingerprints mean the same code."""

    parts: tuple[tuple[str, str], ...]  # (name, digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fingerprint) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    @property
    def digest(self) -> str:
        return _sha("\n".join(f"{name}={d}" for name, d in sorted(self.parts)))

    def changed(self, old: object) -> list[str]:
        """The names whose code differs from ``old`` (added or removed ones included)."""
        if not isinstance(old, Fingerprint):
            return [name for name, _ in self.parts[:1]]
        before, now = dict(old.parts), dict(self.parts)
        return [n for n, d in self.parts if before.get(n) != d] + [
            n for n in before if n not in now
        ]

    def with_values(self, cls: type) -> Fingerprint:
        """With ``cls``'s plain class attributes as evaluated (``version = f"1.{runs}"``)."""
        plain = [(k, v) for k, v in vars(cls).items() if not k.startswith("__") and not callable(v)]
        if not (values := sorted((k, v) for k, v in plain if _is_data(v))):
            return self
        extra, name = _digest(tuple(values)), cls.__qualname__
        if name not in dict(self.parts):
            return Fingerprint((*self.parts, (name, extra)))
        return Fingerprint(tuple((p, _sha(d + extra) if p == name else d) for p, d in self.parts))


def value_digest(value: object) -> str:
    """A digest of a value a cell uses from the notebook's namespace."""
    if isinstance(value, types.ModuleType):  # as the cell's own `import` of it would
        return _sha(f"module {value.__name__}")
    if callable(value) or _is_data(value):  # classes, functions; constants, settings
        return _digest(value)
    # an object with state of its own (a kernel, a client): its type stands for it
    return _sha(f"{type(value).__module__}.{type(value).__qualname__}")


def _is_data(value: object, depth: int = 0) -> bool:
    """Plain values, containers of them, dataclass and pydantic model instances."""
    if value is None or isinstance(value, bool | int | float | complex | str | bytes | Enum):
        return True
    if depth < 4 and isinstance(value, tuple | list | set | frozenset):
        return all(_is_data(v, depth + 1) for v in value)
    if depth < 4 and isinstance(value, dict):
        return all(_is_data(k, depth + 1) and _is_data(v, depth + 1) for k, v in value.items())
    return dataclasses.is_dataclass(value) or hasattr(type(value), "model_fields")


def class_fingerprint(cls: type) -> Fingerprint:
    """A fingerprint from a class object alone (``Kernel.define`` given no fingerprints)."""
    return Fingerprint(((cls.__qualname__, object_digest(cls)),))


def object_digest(cls: type) -> str:
    """A digest of a class's attributes and methods' code, equal across runs and Pythons."""
    h = hashlib.sha256()
    for klass in cls.__mro__:
        if klass is object or klass.__module__.startswith("helixlab.kernel"):
            continue
        h.update(klass.__qualname__.encode())
        fields = vars(klass).get("__pydantic_fields__")
        for key, value in sorted(vars(klass).items()):
            if key in _NOT_CODE or (fields is not None and key.startswith(_PYDANTIC_MADE)):
                continue
            h.update(key.encode())
            _feed(h, value)
        if isinstance(fields, dict):  # a pydantic model: its fields as declared
            for key, info in sorted(fields.items()):
                h.update(key.encode())
                _feed(h, info.annotation)
                _feed(h, info.default)
    return h.hexdigest()


#: what Python (3.13 too) and pydantic (prefixes) make at class creation: not the code
_NOT_CODE = {"__module__", "__dict__", "__weakref__", "__qualname__", "__firstlineno__"}
_NOT_CODE |= {"__static_attributes__"}
_PYDANTIC_MADE: tuple[str, ...] = ("__pydantic", "__signature__", "__class_vars__", "_abc_impl")
_PYDANTIC_MADE += ("__private_attributes__", "__abstractmethods__", "__annotations__")
_PYDANTIC_MADE += ("model_fields", "model_computed_fields")


def _feed(h: Any, value: object, depth: int = 0) -> None:
    if depth > 20:
        return
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    parts: Iterable[object]
    if isinstance(value, property):
        parts = (value.fget, value.fset, value.fdel)
    elif isinstance(value, types.FunctionType):
        parts = (value.__code__, value.__defaults__)
    elif isinstance(value, types.CodeType):
        h.update(value.co_code + repr(value.co_names).encode())
        parts = value.co_consts
    elif isinstance(value, tuple | list | frozenset | set):
        parts = sorted(map(repr, value)) if isinstance(value, set | frozenset) else value
    elif isinstance(value, type):
        h.update(f"{value.__module__}.{value.__qualname__}".encode())
        mine = not value.__module__.startswith(("builtins", "pydantic", "typing", "helixlab"))
        if mine and depth < 3:
            h.update(object_digest(value).encode())
        return
    else:
        try:
            text = repr(value)
        except Exception:  # a value whose repr fails: its type stands for it
            text = type(value).__qualname__
        h.update(_ADDRESS.sub("", text).encode())  # addresses differ between runs
        return
    for part in parts:
        _feed(h, part, depth + 1)


_ADDRESS = re.compile(r"(?: at )?0x[0-9a-fA-F]+")


def _digest(value: object) -> str:
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
