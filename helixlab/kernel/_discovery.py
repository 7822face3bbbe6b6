"""Finding plugin classes among objects, in entry points, among the built-ins (plugins
directories are ``helixlab.sources``'s)."""

from __future__ import annotations

import importlib
import importlib.metadata
import types
from collections.abc import Iterable
from typing import Any

from ..errors import PluginError, RegistryError, describe
from ._plugin import Plugin, check_hooks, describe_class

__all__ = [
    "BUILTINS",
    "builtin_names",
    "builtin_plugin",
    "entry_point_plugins",
    "load_target",
    "plugin_classes",
]


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
