"""Built-in plugins, known to every kernel by name so that the course's YAML works as written.

``CATALOG`` maps a plugin name to ``"module:Class"``; a class is imported only when a
configuration names it.
"""

from __future__ import annotations

CATALOG: dict[str, str] = {}

__all__ = ["CATALOG"]
