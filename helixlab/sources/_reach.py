"""What a plugin reaches in its source (a cell, a file): the parts of its fingerprint.

A plugin's *reach* is its class statement plus, transitively, every top-level statement
binding or mutating a name the reached code uses (by :mod:`symtable`). Each reached name is a
part, digested from its AST (no lines or comments); names bound elsewhere (other cells) and by
``from m import x`` (``m`` may be the learner's module) are digested by value.
"""

from __future__ import annotations

import ast
import hashlib
import symtable
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..kernel import Fingerprint, value_digest

__all__ = ["Reach", "reaches"]


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


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
