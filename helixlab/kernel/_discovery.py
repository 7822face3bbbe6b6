"""Finding plugin classes: in a plugins directory, in entry points, among the built-ins.

A plugins directory holds units: ``<name>.py``, or a package ``<name>/`` whose
``plugin.py`` may import its siblings. Every import compiles the source afresh, never a
``.pyc`` (an edit of the same size within the same second would be missed).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import re
import sys
import traceback
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PluginError, RegistryError, describe
from ._fingerprint import Fingerprint, Reach, class_fingerprint, reaches
from ._plugin import Plugin, check_hooks, describe_class

__all__ = ["Sources", "Unit", "import_unit", "plugin_classes", "plugin_units", "unit_for"]

_PREFIX = "_helixlab_unit_"


@dataclass(frozen=True)
class Unit:
    """One importable piece of a plugins directory."""

    name: str
    path: Path  # the file whose classes are plugins (x.py, or x/plugin.py)
    root: Path  # x.py, or the package directory x/

    @property
    def module_name(self) -> str:
        safe = re.sub(r"\W", "_", self.name)
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:10]
        return f"{_PREFIX}{safe}_{digest}"

    def files(self) -> list[Path]:
        return sorted(self.root.rglob("*.py")) if self.root.is_dir() else [self.root]

    def digest(self) -> str:
        """Changes whenever any source file of the unit changes."""
        return _digest([(file, file.read_bytes()) for file in self.files()])

    def read(self) -> Sources:
        """The unit's sources as they are now, read once: a save after it is a change."""
        contents = [(file, file.read_bytes()) for file in self.files()]
        reach: dict[str, Reach] = {}
        siblings, whole = [], ""
        for file, data in contents:
            try:
                tree: ast.Module | None = ast.parse(data, filename=str(file))
            except (SyntaxError, ValueError):  # the import will report it
                tree = None
            code = hashlib.sha256(data if tree is None else ast.dump(tree).encode()).hexdigest()
            if file != self.path:  # a sibling module of the package: in every plugin's reach
                siblings.append((file.relative_to(self.root).as_posix(), code))
                continue
            whole = code
            if tree is not None:
                reach = reaches(tree, [n.name for n in tree.body if isinstance(n, ast.ClassDef)])
        return Sources(_digest(contents), reach, tuple(siblings), whole)


def _digest(contents: list[tuple[Path, bytes]]) -> str:
    h = hashlib.sha256()
    for file, data in contents:
        h.update(str(file).encode())
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class Sources:
    """A unit's files as read once: their digest, and what each class there reaches."""

    digest: str  # changes whenever any byte of any file changes
    reach: dict[str, Reach]  # by class name, for the classes of the plugin file
    siblings: tuple[tuple[str, str], ...]  # (path in the package, digest of its code)
    whole: str  # the plugin file's code, for a class not found at its top level

    def fingerprint(self, cls: type) -> Fingerprint:
        """What ``cls`` from this unit is matched on: the code it reaches, sibling modules."""
        reach = self.reach.get(cls.__qualname__)
        if reach is not None:
            own = reach.fingerprint().with_values(cls)
        elif self.whole:
            own = Fingerprint(((cls.__qualname__, self.whole),))
        else:
            own = class_fingerprint(cls)
        return own.with_parts(self.siblings)


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
    directory = directory.resolve()
    try:
        rel = changed.resolve().relative_to(directory)
    except ValueError:
        return None
    return _unit(directory / rel.parts[0]) if rel.parts else None


class _FreshLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time, so it neither reads nor writes bytecode."""

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _UnitFinder(importlib.abc.MetaPathFinder):
    """Finds the submodules of unit packages with the fresh loader."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(_PREFIX) or "." not in fullname or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for base in path:  # a subpackage, or a module; the loader says which is a package
            for file in (Path(base) / leaf / "__init__.py", Path(base) / f"{leaf}.py"):
                if file.is_file():
                    loader = _FreshLoader(fullname, str(file))
                    return importlib.util.spec_from_file_location(fullname, file, loader=loader)
        return None


_FINDER = _UnitFinder()


def _purge(module_name: str) -> None:
    for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
        del sys.modules[name]


def import_unit(unit: Unit) -> list[type[Plugin]]:
    """Import ``unit`` afresh and return its plugin classes; a failure is a PluginError in
    phase ``import`` naming file:line."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    name = unit.module_name
    _purge(name)
    try:
        if unit.root.is_dir():
            package = types.ModuleType(name)
            package.__path__ = [str(unit.root)]
            package.__file__ = str(unit.root / "__init__.py")
            sys.modules[name] = package
            init = unit.root / "__init__.py"
            if init.is_file():
                exec(_FreshLoader(name, str(init)).get_code(name), package.__dict__)
            module = importlib.import_module(f"{name}.plugin")
        else:
            loader = _FreshLoader(name, str(unit.path))
            spec = importlib.util.spec_from_file_location(name, unit.path, loader=loader)
            assert spec is not None  # a file location and a loader always make one
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            loader.exec_module(module)
    except Exception as exc:
        _purge(name)
        raise PluginError(unit.name, "import", _import_message(unit, exc), cause=exc) from exc
    return checked_classes(vars(module).values(), module.__name__, unit.name)


def checked_classes(objects: Iterable[object], module: str, owner: str) -> list[type[Plugin]]:
    """The plugin classes a file or package defines, refusing what cannot be one.

    A Plugin subclass without a ``name`` is refused (file, class) unless another class
    there extends it (a shared base); a kind without its hook is refused now, not at the
    first request. ``owner`` (the unit or entry point) is the plugin the error names.
    """
    mine = _subclasses(objects, module)
    for cls in mine:
        if cls.name:
            try:
                check_hooks(cls)
            except RegistryError as exc:
                raise PluginError(cls.name, "import", str(exc)) from None
        elif not any(other is not cls and issubclass(other, cls) for other in mine):
            raise PluginError(
                owner,
                "import",
                f"{describe_class(cls)} is a Plugin subclass without a `name`; set a class "
                f'attribute such as name = "my-plugin" (a base class that other plugins in the '
                f"file extend needs none).",
            )
    return [cls for cls in mine if cls.name]


def plugin_classes(objects: Iterable[object], module: str | None = None) -> list[type[Plugin]]:
    """The Plugin subclasses among ``objects`` (defined in ``module``, when given) with a name."""
    return [cls for cls in _subclasses(objects, module) if cls.name]


def _subclasses(objects: Iterable[object], module: str | None) -> list[type[Plugin]]:
    found = [
        obj
        for obj in objects
        if isinstance(obj, type) and issubclass(obj, Plugin) and module in (None, obj.__module__)
    ]
    return list(dict.fromkeys(found))


def _import_message(unit: Unit, exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"Could not import plugin file {exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}"
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f"{f.filename}:{f.lineno}" for f in frames if f.filename.startswith(str(unit.root))]
    return f"Could not import plugin file {mine[-1] if mine else unit.path}: {describe(exc)}"


def entry_point_plugins(group: str) -> list[tuple[str, type[Plugin]]]:
    """``(source, class)`` for each plugin that installed packages publish under ``group``."""
    found: list[tuple[str, type[Plugin]]] = []
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(
                ep.name, "import", f"Entry point {ep.name} = {ep.value} failed: {describe(exc)}"
            ) from exc
        if isinstance(obj, types.ModuleType):
            classes = checked_classes(vars(obj).values(), obj.__name__, ep.name)
        elif isinstance(obj, type):
            classes = checked_classes([obj], obj.__module__, ep.name)
            if not classes:
                raise PluginError(
                    ep.name,
                    "import",
                    f"Entry point {ep.name} = {ep.value} names {obj!r}, which is not a "
                    f"Plugin subclass with a `name`.",
                )
        else:
            classes = plugin_classes(obj)
        found.extend((f"entry point {ep.name} = {ep.value}", cls) for cls in classes)
    return found


#: Built-in plugins by name, as ``"module:Class"``: filled by helixlab's ``__init__`` from
#: ``plugins.CATALOG`` (they build on the gateway, which the kernel does not import).
BUILTINS: dict[str, str] = {}


def load_target(target: str) -> Any:
    """The object a ``"module:attribute"`` string names, its module imported on first use."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def builtin_names() -> list[str]:
    return sorted(BUILTINS)


def builtin_plugin(name: str) -> type[Plugin] | None:
    """The built-in plugin class of that name (imported on first use), or None."""
    target = BUILTINS.get(name)
    return None if target is None else load_target(target)
