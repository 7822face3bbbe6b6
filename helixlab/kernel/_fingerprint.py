"""Fingerprints: what a plugin's definition is matched on, so that a re-run reloads what changed.

A plugin's *reach* in a source (a cell, a file) is its class statement plus, transitively, every
top-level statement binding or mutating a name the reached code uses (by :mod:`symtable`). Each
reached name is a *part*, digested from its AST (no lines or comments), so a change is named
("TokenBucket changed"); names bound elsewhere or by ``from m import x`` are digested by value.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import re
import symtable
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["Fingerprint", "Reach", "class_fingerprint", "reaches"]


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


@dataclass(frozen=True)
class Reach:
    """A class's digested parts, the names it uses from outside, those ``from m import x`` binds."""

    name: str
    parts: tuple[tuple[str, str], ...]
    outside: tuple[str, ...]
    imported: tuple[str, ...] = ()

    def fingerprint(self, namespace: Mapping[str, Any] | None = None) -> Fingerprint:
        """The fingerprint, ``outside`` and ``imported`` names digested from ``namespace``."""
        values = namespace or {}
        parts = [
            (n, _sha(d + value_digest(values[n]))) if n in self.imported and n in values else (n, d)
            for n, d in self.parts
        ]
        parts += [(name, value_digest(values[name])) for name in self.outside if name in values]
        return Fingerprint(tuple(parts))

    def as_constant(self) -> tuple:
        """A tuple of strings: an AST constant, handed over in the cell's code."""
        return (self.name, self.parts, self.outside, self.imported)

    @classmethod
    def from_constant(cls, value: tuple) -> Reach:
        name, parts, outside, imported = value
        return cls(name, tuple(tuple(p) for p in parts), tuple(outside), tuple(imported))


def reaches(tree: ast.Module | str, classes: Iterable[str]) -> dict[str, Reach]:
    """The :class:`Reach` of each top-level class named in ``classes``. ``from __future__``
    and ``from m import *`` are in every reach; ``import x as y`` is digested as a module."""
    if isinstance(tree, str):
        tree = ast.parse(tree)
    bound: dict[str, list[tuple[str, set[str], bool]]] = {}  # name -> (dump, uses, from-import)
    shared: list[tuple[str, str, set[str]]] = []  # (label, dump, uses) of the everywhere ones
    for node in tree.body:
        everywhere = isinstance(node, ast.ImportFrom) and (
            node.module == "__future__" or any(a.name == "*" for a in node.names)
        )
        binds, uses = _names(node)
        dump = ast.dump(node)
        if isinstance(node, ast.Import) and len(node.names) == 1:
            alias = node.names[0]
            dump = f"module {alias.name if alias.asname else alias.name.partition('.')[0]}"
        if everywhere:
            shared.append((ast.unparse(node), dump, uses))
        for name in binds:
            bound.setdefault(name, []).append(
                (dump, uses, isinstance(node, ast.ImportFrom) and not everywhere)
            )
    found = {}
    for cls in (c for c in classes if c in bound):
        seen: dict[str, None] = {}  # breadth first: the order parts are reached in
        todo = [cls, *sorted({n for *_, uses in shared for n in uses})]
        while todo:
            if (name := todo.pop(0)) not in seen:
                seen[name] = None
                todo.extend(sorted({n for _, uses, _ in bound.get(name, ()) for n in uses}))
        inside = [n for n in seen if n in bound]
        parts = [(n, _sha("\n".join(dump for dump, *_ in bound[n]))) for n in inside]
        parts += [(label, _sha(dump)) for label, dump, _ in shared]
        imported = tuple(n for n in inside if any(imports for *_, imports in bound[n]))
        found[cls] = Reach(cls, tuple(parts), tuple(n for n in seen if n not in bound), imported)
    return found


def _names(node: ast.stmt) -> tuple[set[str], set[str]]:
    """(bound or mutated, used) module-level names of a top-level statement, string annotations
    and in-place changes (``X.a = 1``, ``X[k] = v``, ``X.add(y)``) included."""
    binds: set[str] = set()
    uses: set[str] = set()
    try:
        table = symtable.symtable(ast.unparse(node), "<statement>", "exec")
    except (SyntaxError, ValueError):  # top-level await and the like: every name counts
        names = [n for n in ast.walk(node) if isinstance(n, ast.Name)]
        binds = {n.id for n in names if not isinstance(n.ctx, ast.Load)}
        uses = {n.id for n in names}
    else:
        for sym in table.get_symbols():
            if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
                binds.add(sym.get_name())
            if sym.is_referenced():
                uses.add(sym.get_name())
        stack = list(table.get_children())
        while stack:
            child = stack.pop()
            stack.extend(child.get_children())
            for sym in child.get_symbols():
                if sym.is_global():
                    (binds if sym.is_assigned() else uses).add(sym.get_name())
        for sub in ast.walk(node):  # string annotations, which symtable cannot see
            note = sub.annotation if isinstance(sub, ast.arg | ast.AnnAssign) else None
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                note = sub.returns
            if isinstance(note, ast.Constant) and isinstance(note.value, str):
                try:
                    parsed = ast.parse(note.value, mode="eval")
                except SyntaxError:
                    continue
                uses |= {n.id for n in ast.walk(parsed) if isinstance(n, ast.Name)}
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign | ast.Delete):
        targets = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        targets = [node.value.func] if isinstance(node.value.func, ast.Attribute) else []
    for target in targets:
        while isinstance(target, ast.Attribute | ast.Subscript | ast.Starred):
            target = target.value
        if isinstance(target, ast.Name):
            binds.add(target.id)
    return binds, uses


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
_PYDANTIC_MADE = ("__pydantic", "__signature__", "__class_vars__", "_abc_impl", "model_fields")
_PYDANTIC_MADE += ("__private_attributes__", "__abstractmethods__", "__annotations__")
_PYDANTIC_MADE += ("model_computed_fields",)


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
