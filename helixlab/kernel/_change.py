"""A change of the live set, as one value: reload, configure, apply a config, define code.

``Kernel.apply(change)`` makes it (prepare and commit at once) and ``Kernel.prepare(change)``
stops it at its swap; ``reload``, ``configure``, ``apply_config`` and ``define`` are apply's
shorthands. A ``define_file`` change names a plugin file the kernel imports itself, under its
import timeout (what a fleet ships for a saved file: see ``helixlab/fleet/_wire.py``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._fingerprint import Fingerprint
from ._operations import blocking
from ._plugin import Plugin
from ._reports import ReloadReport

__all__ = ["Change", "Shorthands"]

Kind = Literal["reload", "configure", "apply_config", "define", "define_file"]


@dataclass(frozen=True, repr=False)
class Change:
    """One change of the live set; build it with a constructor (``Change.reload(...)``)."""

    kind: Kind
    targets: tuple[str | type[Plugin], ...] = ()  # reload
    cascade: bool = True
    plugin: str = ""  # configure
    values: Mapping[str, Any] = field(default_factory=dict)
    document: str | os.PathLike[str] | Mapping[str, Any] = ""  # apply_config
    source: str | None = None  # apply_config, define, define_file
    line_offset: int = 0
    classes: tuple[type[Plugin], ...] = ()  # define
    origin: str = "cell"
    unit: str | None = None
    fingerprints: Mapping[str, Fingerprint] = field(default_factory=dict)
    directory: str = ""  # define_file: the plugins directory, and the unit's path in it
    path: str = ""

    @classmethod
    def reload(cls, *targets: str | type[Plugin], cascade: bool = True) -> Change:
        """Restart ``targets`` (names, or redefined classes) with their dependents."""
        return cls("reload", targets=tuple(targets), cascade=cascade)

    @classmethod
    def configure(cls, plugin: str, values: Mapping[str, Any]) -> Change:
        """Merge ``values`` over ``plugin``'s config; restart it with its dependents if running."""
        return cls("configure", plugin=plugin, values=dict(values))

    @classmethod
    def apply_config(
        cls,
        document: str | os.PathLike[str] | Mapping[str, Any],
        *,
        source: str | None = None,
        line_offset: int = 0,
    ) -> Change:
        """Apply a YAML configuration: its text, a path, or the mapping it parses to."""
        return cls("apply_config", document=document, source=source, line_offset=line_offset)

    @classmethod
    def define(
        cls,
        classes: Iterable[type[Plugin]],
        *,
        source: str,
        origin: str = "cell",
        unit: str | None = None,
        fingerprints: Mapping[str, Fingerprint] | None = None,
    ) -> Change:
        """New code (a ``%%helix plugin`` cell): register new plugins, reload changed ones."""
        return cls(
            "define",
            classes=tuple(classes),
            source=source,
            origin=origin,
            unit=unit,
            fingerprints=dict(fingerprints or {}),
        )

    @classmethod
    def define_file(
        cls, directory: str | os.PathLike[str], path: str | os.PathLike[str], *, source: str = ""
    ) -> Change:
        """The plugin file (or package) at ``path`` in the plugins ``directory``, imported by
        the kernel that applies it; ``source`` names it in reports (default: its path)."""
        return cls("define_file", directory=str(directory), path=str(path), source=source or None)

    def __repr__(self) -> str:
        if self.kind == "reload":
            what = ", ".join(t if isinstance(t, str) else t.__qualname__ for t in self.targets)
        elif self.kind == "configure":  # values may be secret: their keys only
            what = f"{self.plugin}: {', '.join(map(str, self.values))}"
        elif self.kind == "apply_config":
            what = self.source or ("a mapping" if isinstance(self.document, Mapping) else "text")
        elif self.kind == "define":
            what = ", ".join(getattr(c, "name", c.__qualname__) for c in self.classes)
        else:
            what = self.path
        return f"<Change {self.kind}: {what}>"


class Shorthands:
    """The Kernel's conveniences over ``apply`` (notebooks, labs, gateway)."""

    aapply: Callable[[Change], Awaitable[ReloadReport]]

    async def areload(self, *targets: str | type[Plugin], cascade: bool = True) -> ReloadReport:
        """Hot reload plugins (by name, or with a redefined class) with all their dependents;
        with ``cascade=False`` dependents are not restarted: their ``ctx.get`` answers the new
        instance from then on, but what they stored earlier is the old, stopped one."""
        return await self.aapply(Change.reload(*targets, cascade=cascade))

    reload = blocking(areload)

    async def aconfigure(self, name: str, config: Mapping[str, Any]) -> ReloadReport | None:
        """Merge ``config`` over ``name``'s, validated first; restart it with its dependents if
        running (the report; None if not running). A ConfigError leaves everything as it was."""
        report = await self.aapply(Change.configure(name, config))
        return report if report.order else None

    configure = blocking(aconfigure)

    async def aapply_config(
        self, data: str | os.PathLike | Mapping, *, source: str | None = None, line_offset: int = 0
    ) -> list[ReloadReport]:
        """Apply a YAML configuration (path, text or mapping): every problem reported at once,
        before anything changes; built-in plugins it names registered; running plugins whose
        configuration changed restart with dependents."""
        change = Change.apply_config(data, source=source, line_offset=line_offset)
        return [report] if (report := await self.aapply(change)).order else []

    apply_config = blocking(aapply_config)

    async def adefine(self, classes: Iterable[type[Plugin]], **how: Any) -> ReloadReport:
        """New code (a ``%%helix plugin`` cell, a saved file): see :meth:`Change.define`."""
        return await self.aapply(Change.define(classes, **how))

    define = blocking(adefine)
