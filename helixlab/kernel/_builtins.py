"""The built-in plugins, known to every kernel by name (configurations name them); set by
helixlab/__init__.py from ``helixlab.plugins.CATALOG``."""

from __future__ import annotations

import importlib
from typing import Any

from ._plugin import Plugin

__all__ = ["BUILTINS", "builtin_names", "builtin_plugin", "load_target"]


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
