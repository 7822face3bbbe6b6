"""Finding plugin classes: in a plugins directory, in entry points, among the built-ins.

A plugins directory holds units: ``<name>.py``, or a package ``<name>/`` whose ``plugin.py``
may import its siblings. One read of a unit (:meth:`Unit.read`) serves its digest, its
fingerprints and its import, which compiles those bytes, never a ``.pyc``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import re
import sys
import traceback
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PluginError, RegistryError, describe
from ._fingerprint import Fingerprint, Reach, reaches
from ._plugin import Plugin, check_hooks, describe_class

__all__ = ["Sources", "Unit", "import_unit", "plugin_classes", "plugin_units", "unit_for"]

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
    except Exception as exc:
        purge()
        frames = traceback.extract_tb(exc.__traceback__)
        mine = [f"{f.filename}:{f.lineno}" for f in frames if f.filename.startswith(str(unit.root))]
        at, what = (mine[-1] if mine else str(unit.path)), describe(exc)
        if isinstance(exc, SyntaxError) and exc.filename:
            at, what = f"{exc.filename}:{exc.lineno}", f"SyntaxError: {exc.msg}"
        message = f"Could not import plugin file {at}: {what}"
        raise PluginError(unit.name, "import", message, cause=exc) from exc
    return plugin_classes(vars(module).values(), module.__name__, unit.name)


def plugin_classes(
    objects: Iterable[object], module: str | None = None, owner: str = ""
) -> list[type[Plugin]]:
    """The named Plugin subclasses among ``objects`` (defined in ``module``, if given). With
    ``owner`` (what an error names), a kind without its hook is refused, and so is a subclass
    without a ``name`` unless another class there extends it (a shared base)."""
    mine = [o for o in objects if isinstance(o, type) and issubclass(o, Plugin)]
    mine = list(dict.fromkeys(cls for cls in mine if module in (None, cls.__module__)))
    for cls in mine if owner else ():
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


def entry_point_plugins(group: str) -> list[tuple[str, type[Plugin]]]:
    """``(source, class)`` of each plugin published under ``group``: a class, a module's
    classes, or a list of classes."""
    found: list[tuple[str, type[Plugin]]] = []
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
        where = f"{ep.name} = {ep.value}"
        try:
            obj = ep.load()
        except Exception as exc:
            why = f"failed: {describe(exc)}"
            raise PluginError(ep.name, "import", f"Entry point {where} {why}") from exc
        if isinstance(obj, types.ModuleType):
            classes = plugin_classes(vars(obj).values(), obj.__name__, ep.name)
        elif isinstance(obj, type):
            classes = plugin_classes([obj], obj.__module__, ep.name)
        else:
            classes = plugin_classes(obj)
        if isinstance(obj, type) and not classes:
            why = f"names {obj!r}, which is not a Plugin subclass with a `name`"
            raise PluginError(ep.name, "import", f"Entry point {where} {why}.")
        found.extend((f"entry point {where}", cls) for cls in classes)
    return found


#: Built-in plugins, name -> ``"module:Class"``: filled by helixlab's ``__init__`` (they
#: build on the gateway, which the kernel does not import).
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
