"""helixlab's own files, by digest: a submission must not change the code that grades the others."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["changed_files", "package_digests"]


def package_digests(root: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of every ``.py`` file of the helixlab package."""
    if root is None:
        root = Path(__file__).resolve().parent.parent
    return {
        str(path.relative_to(root.parent)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*.py"))
    }


def changed_files(before: dict[str, str], root: Path | None = None) -> list[str]:
    """The package files added, removed or changed since ``before`` was taken."""
    after = package_digests(root)
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
