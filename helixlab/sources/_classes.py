"""Plugin classes among objects (a module's, a cell's) and published under an entry point;
what cannot be a plugin refused at import, naming the class and where it is."""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import types
from collections.abc import Iterable

from ..errors import PluginError, RegistryError, describe
from ..kernel import MiddlewarePlugin, Plugin, ProviderPlugin, ToolPlugin

__all__ = ["check_hooks", "describe_class", "entry_points", "plugin_classes"]


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


def entry_points(group: str) -> list[tuple[str, type[Plugin]]]:
    """``(source, class)`` of each plugin published under ``group``: a class, a module's
    classes, or a list of classes."""
    found: list[tuple[str, type[Plugin]]] = []
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
        where = f"{ep.name} = {ep.value}"
        try:
            obj = ep.load()
        except BaseException as exc:  # sys.exit() in the package too: it would end the loop
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


def check_hooks(cls: type[Plugin]) -> None:
    """Refuse a kind without its hook (a MiddlewarePlugin without get_middleware...): for
    plugin files, when they load; a notebook may still sketch a kind first."""
    for base in (MiddlewarePlugin, ProviderPlugin, ToolPlugin):
        hook = next(name for name in vars(base) if name.startswith("get_"))  # the one it adds
        if issubclass(cls, base) and getattr(cls, hook) is getattr(base, hook):
            raise RegistryError(
                f"Plugin {cls.name!r} ({describe_class(cls)}) is a {base.__name__} but does not "
                f"define {hook}(); define it, or subclass a different kind."
            )


def describe_class(cls: type) -> str:
    """``class X in file:line`` for messages about a class (file unknown: its module)."""
    where = cls.__module__
    with contextlib.suppress(OSError, TypeError):  # a class made with type(), or in a REPL
        where = inspect.getsourcefile(cls) or where
        where += f":{inspect.getsourcelines(cls)[1]}"
    return f"class {cls.__qualname__} in {where}"
