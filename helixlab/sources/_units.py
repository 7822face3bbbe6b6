"""Plugins directories: units, each read once, imported afresh from that read.

A plugins directory holds units: ``<name>.py``, or a package ``<name>/`` whose ``plugin.py``
may import its siblings. One read of a unit (:meth:`Unit.read`) serves its digest, its
fingerprints and its import, which compiles those bytes, never a ``.pyc``.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import traceback
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PluginError, RegistryError, ReloadError, describe
from ..kernel import IMPORT_TIMEOUT, Change, Fingerprint, Plugin
from ._classes import plugin_classes
from ._reach import Reach, reaches

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = [
    "Sources",
    "Unit",
    "define_file",
    "find",
    "import_file",
    "import_unit",
    "plugin_units",
    "unit_for",
]

_PREFIX = "_helixlab_unit_"


@dataclass(frozen=True)
class Unit:
    """One importable piece of a plugins directory."""

    name: str
    path: Path  # the file whose classes are plugins (x.py, or x/plugin.py)
    root: Path  # x.py, or the package directory x/

    def read(self) -> Sources:
        """The unit's sources as they are now, read once: a save after it is a change."""
        files = sorted(self.root.rglob("*.py")) if self.root.is_dir() else [self.root]
        contents = {file: file.read_bytes() for file in files}
        codes, reach = {}, {}
        for file, data in contents.items():
            try:
                tree = ast.parse(data, filename=str(file))
            except (SyntaxError, ValueError):  # the import will report it
                codes[file] = hashlib.sha256(data).hexdigest()
                continue
            codes[file] = hashlib.sha256(ast.dump(tree).encode()).hexdigest()
            if file == self.path:
                reach = reaches(tree, [n.name for n in tree.body if isinstance(n, ast.ClassDef)])
        everything = b"".join(str(file).encode() + data for file, data in contents.items())
        siblings = [
            (f.relative_to(self.root).as_posix(), c) for f, c in codes.items() if f != self.path
        ]
        whole = codes.get(self.path, "")
        return Sources(
            contents, hashlib.sha256(everything).hexdigest(), reach, tuple(siblings), whole
        )


@dataclass(frozen=True)
class Sources:
    """A unit's files as read once: what its import compiles and what it is matched on."""

    files: Mapping[Path, bytes]
    digest: str  # of every byte of every file
    reach: Mapping[str, Reach]  # by class name, for the classes of the plugin file
    siblings: tuple[tuple[str, str], ...]  # (path in the package, digest of its code)
    whole: str  # the plugin file's code, for a class not found at its top level

    def fingerprint(self, cls: type) -> Fingerprint:
        """What ``cls`` is matched on: the code it reaches (else the whole file), siblings."""
        reach = self.reach.get(cls.__qualname__)
        if reach is None:
            return Fingerprint(((cls.__qualname__, self.whole), *self.siblings))
        return Fingerprint(reach.fingerprint().with_values(cls).parts + self.siblings)


def _unit(child: Path) -> Unit | None:
    """The unit at the top of a plugins directory: ``x.py``, or ``x/`` with a plugin.py."""
    if child.name.startswith(("_", ".")):
        return None
    if child.is_dir() and (child / "plugin.py").is_file():
        return Unit(child.name, child / "plugin.py", child)
    return Unit(child.stem, child, child) if child.suffix == ".py" and child.is_file() else None


def plugin_units(directory: Path) -> list[Unit]:
    """The units of a plugins directory, sorted by name (a symlink out of it is ignored)."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise RegistryError(f"Plugins directory {str(directory)!r} does not exist.")
    found = (_unit(c) for c in sorted(directory.iterdir()) if c.resolve().is_relative_to(directory))
    return [unit for unit in found if unit is not None]


def unit_for(directory: Path, changed: Path) -> Unit | None:
    """The unit a changed file belongs to; None outside ``directory`` or not plugin code."""
    directory, changed = directory.resolve(), changed.resolve()
    if not changed.is_relative_to(directory) or changed == directory:
        return None
    return _unit(directory / changed.relative_to(directory).parts[0])


class _Loader(importlib.machinery.SourceFileLoader):
    """Compiles a unit's files as read, never bytecode; on ``sys.meta_path``, the class finds
    the submodules of unit packages."""

    def __init__(self, fullname: str, path: Path, files: Mapping[Path, bytes]):
        super().__init__(fullname, str(path))
        self.files = files

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        data = self.files.get(Path(path))
        return self.source_to_code(self.get_data(path) if data is None else data, path)

    @classmethod
    def find_spec(cls, fullname: str, path: Any, target: Any = None) -> Any:
        if not fullname.startswith(_PREFIX) or not path:
            return None
        package = sys.modules.get(fullname.partition(".")[0])
        files = getattr(getattr(package, "__loader__", None), "files", {})
        leaf = fullname.rpartition(".")[2]
        for base in path:  # a subpackage, or a module
            for file in (Path(base) / leaf / "__init__.py", Path(base) / f"{leaf}.py"):
                if file in files or file.is_file():
                    loader = cls(fullname, file, files)
                    return importlib.util.spec_from_file_location(fullname, file, loader=loader)
        return None


def import_unit(unit: Unit, sources: Sources | None = None) -> list[type[Plugin]]:
    """``unit``'s plugin classes, imported afresh from ``sources`` (default: read now); a
    failure is a PluginError in phase ``import`` naming file:line."""
    if _Loader not in sys.meta_path:
        sys.meta_path.insert(0, _Loader)
    safe = re.sub(r"\W", "_", unit.name)
    name = f"{_PREFIX}{safe}_{hashlib.sha1(str(unit.root).encode()).hexdigest()[:10]}"

    def purge() -> None:
        for key in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
            del sys.modules[key]

    purge()
    try:
        files = (sources or unit.read()).files
        package = unit.root != unit.path  # the package's __init__, then its plugin.py
        start = unit.root / "__init__.py" if package else unit.path
        loader = _Loader(name, start, files)
        where = [str(unit.root)] if package else None
        spec = importlib.util.spec_from_file_location(
            name, start, loader=loader, submodule_search_locations=where
        )
        assert spec is not None  # a file location and a loader always make one
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        if start in files:
            loader.exec_module(module)
        if package:
            module = importlib.import_module(f"{name}.plugin")
    except BaseException as exc:  # sys.exit() at its top level too: it would end the loop
        purge()
        frames = traceback.extract_tb(exc.__traceback__)
        mine = [f"{f.filename}:{f.lineno}" for f in frames if f.filename.startswith(str(unit.root))]
        at, what = (mine[-1] if mine else str(unit.path)), describe(exc)
        if isinstance(exc, SyntaxError) and exc.filename:
            at, what = f"{exc.filename}:{exc.lineno}", f"SyntaxError: {exc.msg}"
        message = f"Could not import plugin file {at}: {what}"
        raise PluginError(unit.name, "import", message, cause=exc) from exc
    return plugin_classes(vars(module).values(), module.__name__, unit.name)


async def import_file(
    kernel: Kernel,
    root: str | os.PathLike,
    path: str | os.PathLike,
    *,
    timeout: float = IMPORT_TIMEOUT,
    sources: Sources | None = None,
) -> tuple[list[type[Plugin]], dict[str, Fingerprint]]:
    """Import a plugin file or package (``root``; ``path`` the file defining the plugins) as a
    plugins directory holds it: its classes and their fingerprints, from one read (``sources``,
    else read now), on the kernel's worker threads under ``timeout`` (``Kernel.aimport``)."""
    root_, path_ = Path(root), Path(path)
    unit = Unit(root_.stem if root_.is_file() else root_.name, path_, root_)
    read = await asyncio.to_thread(unit.read) if sources is None else sources
    load = functools.partial(import_unit, unit, read)
    key, what = str(unit.root), unit.path.name
    classes = await kernel.aimport(
        unit.name, what, load, key=key, content=read.digest, timeout=timeout
    )
    return classes, {cls.name: read.fingerprint(cls) for cls in classes}


async def find(kernel: Kernel, path: str | os.PathLike) -> list[tuple[Any, ...]]:
    """``(class, source, unit, fingerprint)`` of every plugin in a plugins directory
    (``Kernel.discover`` registers them)."""
    found: list[tuple[Any, ...]] = []
    for unit in plugin_units(Path(path)):
        classes, prints = await import_file(kernel, unit.root, unit.path)
        found += [(cls, str(unit.path), str(unit.root), prints[cls.name]) for cls in classes]
    return found


async def define_file(kernel: Kernel, change: Change) -> Change:
    """A ``define_file`` change as the ``define`` of what its file holds (imported before the
    operation lock: a hung import holds no other operation)."""
    unit = unit_for(Path(change.directory), Path(change.path))
    if unit is None:
        message = f"{change.path} is not plugin code in the plugins directory {change.directory}."
        raise ReloadError(Path(change.path).stem, "import", message)
    classes, prints = await import_file(kernel, unit.root, unit.path)
    source = change.source or str(unit.path)
    return Change.define(
        classes, source=source, origin="file", unit=str(unit.root), fingerprints=prints
    )
