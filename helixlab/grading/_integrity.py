"""helixlab's own files, by digest: a submission must not change the code that grades the others."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["changed_files", "package_digests", "remove_bytecode"]


def package_digests(root: Path | None = None, *, py_only: bool = False) -> dict[str, str]:
    """``{relative path: sha256}`` of every file of the helixlab package, bytecode included."""
    if root is None:
        root = Path(__file__).resolve().parent.parent
    return {
        str(path.relative_to(root.parent)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*.py" if py_only else "*"))
        if path.is_file()
    }


def _bytecode(name: str) -> bool:
    return "__pycache__" in Path(name).parts


def changed_files(before: dict[str, str], root: Path | None = None) -> list[str]:
    """The package files (not bytecode) added, removed or changed since ``before``."""
    after = package_digests(root)
    return sorted(
        name
        for name in before.keys() | after.keys()
        if before.get(name) != after.get(name) and not _bytecode(name)
    )


def remove_bytecode(before: dict[str, str], root: Path | None = None) -> list[str]:
    """Remove bytecode added or changed under ``__pycache__`` since ``before``; its names.

    No grading kernel reads it (they read their own copy, ``_isolation``), but the next
    Python to import helixlab outside the grader would.
    """
    if root is None:
        root = Path(__file__).resolve().parent.parent
    planted = []
    for name, digest in package_digests(root).items():
        if _bytecode(name) and before.get(name) != digest:
            (root.parent / name).unlink(missing_ok=True)
            planted.append(name)
    return sorted(planted)
