"""A change of the live set, as one value: reload, configure, apply a config, define code.

``Kernel.apply(change)`` makes it (prepare and commit at once) and ``Kernel.prepare(change)``
stops it at its swap; ``reload``, ``configure``, ``apply_config`` and ``define`` are their
shorthands. A fleet ships a change to its workers as :meth:`Change.to_dict` (JSON) and reads
it back with :meth:`Change.from_dict`, which refuses anything it did not write: what comes
back from Redis is not trusted. In-memory forms (classes, a path on this host) do not travel;
a saved plugin file travels as :meth:`Change.define_file`, its path relative to the plugins
directory of whoever applies it, and the kernel imports it itself, under its import timeout.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from ._fingerprint import Fingerprint
from ._operations import PreparedReload, blocking
from ._plugin import Plugin
from ._reports import ReloadReport

__all__ = ["PREPARE_TIMEOUT", "Change", "Shorthands"]

#: How long a PreparedReload may wait for its commit() or abort() before it aborts itself.
PREPARE_TIMEOUT = 60.0

Kind = Literal["reload", "configure", "apply_config", "define", "define_file"]

#: what each kind carries on the wire: key -> required
_WIRE: dict[str, dict[str, bool]] = {
    "reload": {"targets": True, "cascade": False},
    "configure": {"plugin": True, "values": True},
    "apply_config": {"document": True, "source": False, "line_offset": False},
    "define_file": {"path": True, "source": False},
}


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

    # -- constructors ---------------------------------------------------------------------

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

    # -- the wire -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form of this change; ValueError for a form that cannot travel."""
        if self.kind == "reload":
            if not all(isinstance(t, str) for t in self.targets):
                raise ValueError("A reload of classes cannot travel; send plugin names.")
            return {"kind": "reload", "targets": list(self.targets), "cascade": self.cascade}
        if self.kind == "configure":
            return {"kind": "configure", "plugin": self.plugin, "values": _json(self.values)}
        if self.kind == "apply_config":
            if not isinstance(self.document, str | Mapping):
                raise ValueError("A config file's path cannot travel; send its text.")
            doc = self.document if isinstance(self.document, str) else _json(self.document)
            return {
                "kind": "apply_config",
                "document": doc,
                "source": self.source,
                "line_offset": self.line_offset,
            }
        if self.kind == "define_file":
            path = Path(self.path)
            rel = path.relative_to(self.directory) if path.is_absolute() else path
            return {"kind": "define_file", "path": rel.as_posix(), "source": self.source}
        raise ValueError("A definition of classes cannot travel; send define_file.")

    @classmethod
    def from_dict(cls, data: Any, *, directory: str | os.PathLike[str] = "") -> Change:
        """The change :meth:`to_dict` wrote, checked key by key (ValueError, naming the key).

        ``directory``: the plugins directory a ``define_file`` change's path is relative to.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"A change must be a JSON object, not {type(data).__name__}.")
        kind = data.get("kind")
        wire = _WIRE.get(kind) if isinstance(kind, str) else None
        if wire is None or not isinstance(kind, str):
            raise ValueError(f"Unknown change kind {kind!r}; known: {', '.join(_WIRE)}.")
        unknown = sorted(map(str, set(data) - set(wire) - {"kind"}))
        missing = [k for k, required in wire.items() if required and k not in data]
        if unknown or missing:
            what = [f"unknown key(s) {unknown}"] * bool(unknown)
            what += [f"missing key(s) {missing}"] * bool(missing)
            raise ValueError(f"A {kind} change has {' and '.join(what)}.")
        source = _optional_str(kind, data, "source")
        if kind == "reload":
            targets = data["targets"]
            if not isinstance(targets, list) or not targets or not all(map(_name, targets)):
                raise ValueError("A reload change's 'targets' must be a list of plugin names.")
            cascade = data.get("cascade", True)
            if not isinstance(cascade, bool):
                raise ValueError("A reload change's 'cascade' must be true or false.")
            return cls.reload(*targets, cascade=cascade)
        if kind == "configure":
            if not _name(data["plugin"]):
                raise ValueError("A configure change's 'plugin' must be a plugin name.")
            values = data["values"]
            if not isinstance(values, Mapping):
                raise ValueError("A configure change's 'values' must be a JSON object.")
            return cls.configure(data["plugin"], _json(values, "values"))
        if kind == "apply_config":
            doc = data["document"]
            if not isinstance(doc, str | Mapping):
                raise ValueError("An apply_config change's 'document' must be text or an object.")
            offset = data.get("line_offset", 0)
            if type(offset) is not int or offset < 0:
                raise ValueError("An apply_config change's 'line_offset' must be an integer >= 0.")
            doc = doc if isinstance(doc, str) else _json(doc, "document")
            return cls.apply_config(doc, source=source, line_offset=offset)
        path = data["path"]
        rel = PurePosixPath(path) if isinstance(path, str) and "\\" not in path else None
        if rel is None or rel.is_absolute() or not rel.parts or ".." in rel.parts:
            raise ValueError(
                f"A define_file change's 'path' must be a relative path inside the plugins "
                f"directory, not {path!r}."
            )
        if not directory:
            raise ValueError("A define_file change needs the plugins directory it is read in.")
        return cls.define_file(directory, Path(directory, *rel.parts), source=source or "")

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


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _optional_str(kind: str, data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"A {kind} change's {key!r} must be text or null.")
    return value


def _json(value: Any, where: str = "values", depth: int = 0) -> Any:
    """``value`` as plain JSON data (dicts with text keys, lists, text, numbers, bools, null);
    ValueError naming ``where`` for anything else."""
    if depth > 64:
        raise ValueError(f"{where!r} is nested too deeply.")
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where!r} holds {value!r}, which JSON cannot carry.")
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where!r} holds a key that is not text.")
        return {k: _json(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise ValueError(f"{where!r} holds a {type(value).__name__}, which JSON cannot carry.")


class Shorthands:
    """The Kernel's conveniences over ``apply``/``prepare`` (notebooks, labs, gateway, fleet)."""

    if TYPE_CHECKING:

        async def aapply(self, change: Change) -> ReloadReport: ...

        async def aprepare(
            self, change: Change, *, timeout: float | None = PREPARE_TIMEOUT
        ) -> PreparedReload: ...

    async def areload(self, *targets: str | type[Plugin], cascade: bool = True) -> ReloadReport:
        """Hot reload plugins (by name, or with a redefined class) with all their dependents.

        With ``cascade=False`` dependents are not restarted: their ``ctx.get`` answers the
        new instance from then on, but what they stored earlier is the old, stopped one.
        """
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
        """Apply a YAML configuration (path, text or mapping) in the course's format: every
        problem reported at once, before anything changes; built-in plugins it names are
        registered; running plugins whose configuration changed restart with dependents."""
        change = Change.apply_config(data, source=source, line_offset=line_offset)
        return [report] if (report := await self.aapply(change)).order else []

    apply_config = blocking(aapply_config)

    async def adefine(self, classes: Iterable[type[Plugin]], **how: Any) -> ReloadReport:
        """New code (a ``%%helix plugin`` cell, a saved file): see :meth:`Change.define`."""
        return await self.aapply(Change.define(classes, **how))

    define = blocking(adefine)

    async def aprepare_reload(
        self,
        *targets: str | type[Plugin],
        cascade: bool = True,
        timeout: float | None = PREPARE_TIMEOUT,
    ) -> PreparedReload:
        """:meth:`reload` up to its swap (see :meth:`prepare`)."""
        return await self.aprepare(Change.reload(*targets, cascade=cascade), timeout=timeout)

    prepare_reload = blocking(aprepare_reload)

    async def aprepare_configure(
        self, name: str, config: Mapping[str, Any], *, timeout: float | None = PREPARE_TIMEOUT
    ) -> PreparedReload:
        """:meth:`configure` up to its swap (see :meth:`prepare`)."""
        return await self.aprepare(Change.configure(name, config), timeout=timeout)

    prepare_configure = blocking(aprepare_configure)

    async def aprepare_apply_config(
        self,
        data: str | os.PathLike | Mapping,
        *,
        timeout: float | None = PREPARE_TIMEOUT,
        **how: Any,
    ) -> PreparedReload:
        """:meth:`apply_config` up to its swap (see :meth:`prepare`)."""
        return await self.aprepare(Change.apply_config(data, **how), timeout=timeout)

    prepare_apply_config = blocking(aprepare_apply_config)

    async def aprepare_define(
        self,
        classes: Iterable[type[Plugin]],
        *,
        timeout: float | None = PREPARE_TIMEOUT,
        **how: Any,
    ) -> PreparedReload:
        """:meth:`define` up to its swap (see :meth:`prepare`)."""
        return await self.aprepare(Change.define(classes, **how), timeout=timeout)

    prepare_define = blocking(aprepare_define)
