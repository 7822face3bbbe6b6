"""A kernel :class:`~helixlab.kernel.Change` as a fleet ships it: JSON, read back key by key.

:func:`change_to_wire` refuses the in-memory forms (classes, a path on this host), and a
saved plugin file travels as a ``define_file`` change with its path relative to the plugins
directory of whoever applies it. :func:`change_from_wire` refuses anything it did not write:
what comes back from Redis is not trusted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ..kernel import Change

__all__ = ["change_from_wire", "change_to_wire"]

#: what each kind carries on the wire: key -> required
_WIRE: dict[str, dict[str, bool]] = {
    "reload": {"targets": True, "cascade": False},
    "configure": {"plugin": True, "values": True},
    "apply_config": {"document": True, "source": False, "line_offset": False},
    "define_file": {"path": True, "source": False},
}


def change_to_wire(change: Change) -> dict[str, Any]:
    """The JSON-safe form of ``change``; ValueError for a form that cannot travel."""
    if change.kind == "reload":
        if not all(isinstance(t, str) for t in change.targets):
            raise ValueError("A reload of classes cannot travel; send plugin names.")
        return {"kind": "reload", "targets": list(change.targets), "cascade": change.cascade}
    if change.kind == "configure":
        return {"kind": "configure", "plugin": change.plugin, "values": _json(change.values)}
    if change.kind == "apply_config":
        if not isinstance(change.document, str | Mapping):
            raise ValueError("A config file's path cannot travel; send its text.")
        doc = (
            change.document
            if isinstance(change.document, str)
            else _json(change.document, "document")
        )
        return {
            "kind": "apply_config",
            "document": doc,
            "source": change.source,
            "line_offset": change.line_offset,
        }
    if change.kind == "define_file":
        path = Path(change.path)
        rel = path.relative_to(change.directory) if path.is_absolute() else path
        return {"kind": "define_file", "path": rel.as_posix(), "source": change.source}
    raise ValueError("A definition of classes cannot travel; send define_file.")


def change_from_wire(data: Any, *, directory: str | os.PathLike[str] = "") -> Change:
    """The change :func:`change_to_wire` wrote, checked key by key (ValueError, naming the
    key). ``directory``: the plugins directory a ``define_file`` change's path is relative to.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"A change must be a JSON object, not {type(data).__name__}.")
    kind = data.get("kind")
    wire = _WIRE.get(kind) if isinstance(kind, str) else None
    if wire is None or not isinstance(kind, str):
        raise ValueError(f"Unknown change kind {kind!r}; known: {', '.join(_WIRE)}.")
    unknown = sorted(map(str, set(data) - set(wire) - {"kind"}))
    missing = [k for k, required in wire.items() if required and k not in data]
    if unknown or missing:
        what = [f"unknown key(s) {unknown}"] * bool(unknown)
        what += [f"missing key(s) {missing}"] * bool(missing)
        raise ValueError(f"A {kind} change has {' and '.join(what)}.")
    source = _optional_str(kind, data, "source")
    if kind == "reload":
        targets = data["targets"]
        if not isinstance(targets, list) or not targets or not all(map(_name, targets)):
            raise ValueError("A reload change's 'targets' must be a list of plugin names.")
        cascade = data.get("cascade", True)
        if not isinstance(cascade, bool):
            raise ValueError("A reload change's 'cascade' must be true or false.")
        return Change.reload(*targets, cascade=cascade)
    if kind == "configure":
        if not _name(data["plugin"]):
            raise ValueError("A configure change's 'plugin' must be a plugin name.")
        values = data["values"]
        if not isinstance(values, Mapping):
            raise ValueError("A configure change's 'values' must be a JSON object.")
        return Change.configure(data["plugin"], _json(values, "values"))
    if kind == "apply_config":
        doc = data["document"]
        if not isinstance(doc, str | Mapping):
            raise ValueError("An apply_config change's 'document' must be text or an object.")
        offset = data.get("line_offset", 0)
        if type(offset) is not int or offset < 0:
            raise ValueError("An apply_config change's 'line_offset' must be an integer >= 0.")
        doc = doc if isinstance(doc, str) else _json(doc, "document")
        return Change.apply_config(doc, source=source, line_offset=offset)
    path = data["path"]
    rel = PurePosixPath(path) if isinstance(path, str) and "\\" not in path else None
    if rel is None or rel.is_absolute() or not rel.parts or ".." in rel.parts:
        raise ValueError(
            f"A define_file change's 'path' must be a relative path inside the plugins "
            f"directory, not {path!r}."
        )
    if not directory:
        raise ValueError("A define_file change needs the plugins directory it is read in.")
    return Change.define_file(directory, Path(directory, *rel.parts), source=source or "")


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _optional_str(kind: str, data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"A {kind} change's {key!r} must be text or null.")
    return value


def _json(value: Any, where: str = "values", depth: int = 0) -> Any:
    """``value`` as plain JSON data (dicts with text keys, lists, text, numbers, bools, null);
    ValueError naming ``where`` for anything else."""
    if depth > 64:
        raise ValueError(f"{where!r} is nested too deeply.")
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where!r} holds {value!r}, which JSON cannot carry.")
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where!r} holds a key that is not text.")
        return {k: _json(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise ValueError(f"{where!r} holds a {type(value).__name__}, which JSON cannot carry.")
