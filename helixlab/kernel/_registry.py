"""The registry: which plugin classes the kernel knows, with their configuration.

Entries are immutable; changing the registry means building a new mapping, so that a
reload can validate a *proposed* registry completely before anything is committed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import PluginNotFoundError, RegistryError
from ._config import PluginSpec
from ._graph import DependencyGraph, Node
from ._plugin import Plugin, check_plugin_class, parse_dependency
from ._secrets import secret_values
from ._validation import validate_config

__all__ = ["Entry", "Registry"]


@dataclass(frozen=True)
class Entry:
    """One registered plugin: its class, its configuration and where it came from."""

    cls: type[Plugin]
    spec: PluginSpec
    config: Any = None  # validated config: a config_model instance, or a dict
    instance: Plugin | None = None  # given to register(); used for the first load only
    origin: str = "code"  # code | file | entry-point | builtin | cell
    source: str | None = None  # the file (or cell) that defined the class, for people
    unit: str | None = None  # what a new definition is matched on: a file's root, a cell's id
    fingerprint: str | None = None  # digest of the code; a new definition reloads when it differs

    @property
    def name(self) -> str:
        return self.cls.name

    @functools.cached_property
    def secrets(self) -> frozenset[str]:
        """The secret values in this entry's configuration (computed once per entry)."""
        model, marked = self.cls.config_model, self.spec.secrets
        raw = secret_values(self.spec.config, model=model, marked=marked)
        return frozenset(raw | secret_values(self.config, model=model, marked=marked))

    @property
    def requires(self) -> tuple[tuple[str, str], ...]:
        """Declared (class) plus configured (``depends_on``) dependencies, merged by name."""
        merged: dict[str, str] = {}
        for spec in (*self.cls.dependencies, *self.spec.depends_on):
            name, specifier = parse_dependency(spec, self.name)
            if specifier or name not in merged:
                merged[name] = ",".join(s for s in (merged.get(name), specifier) if s)
        return tuple(merged.items())

    @property
    def priority(self) -> int:
        return self.cls.priority if self.spec.priority is None else self.spec.priority

    def node(self) -> Node:
        return Node(
            name=self.name,
            version=str(self.cls.version),
            priority=self.priority,
            enabled=self.spec.enabled,
            requires=self.requires,
        )


@dataclass(frozen=True)
class Registry:
    """An immutable mapping of name → :class:`Entry`, with the operations that derive a new one."""

    entries: Mapping[str, Entry] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise PluginNotFoundError(name, self.entries) from None

    def graph(self) -> DependencyGraph:
        return DependencyGraph({name: entry.node() for name, entry in self.entries.items()})

    def with_entry(self, entry: Entry) -> Registry:
        return Registry({**self.entries, entry.name: entry})

    def without(self, name: str) -> Registry:
        entries = dict(self.entries)
        entries.pop(name, None)
        return Registry(entries)

    def added(
        self,
        plugin: type[Plugin] | Plugin,
        *,
        origin: str = "code",
        source: str | None = None,
        spec: PluginSpec | None = None,
        unit: str | None = None,
        fingerprint: str | None = None,
    ) -> Registry:
        """A registry with ``plugin`` added; a name already taken is refused."""
        instance = plugin if isinstance(plugin, Plugin) else None
        cls = type(plugin) if instance is not None else plugin
        check_plugin_class(cls)
        name = cls.name
        if name in self.entries:
            taken = self.entries[name]
            where = f" from {taken.source}" if taken.source else ""
            raise RegistryError(
                f"A plugin named {name!r} is already registered ({taken.cls.__qualname__} "
                f"{taken.cls.version}{where}); reload it with kernel.reload(NewClass), or "
                f"unregister it first."
            )
        spec = spec or PluginSpec(name=name)
        config = validate_config(spec, cls.config_model)
        entry = Entry(cls, spec, config, instance, origin, source, unit, fingerprint)
        return self.with_entry(entry)

    def with_class(
        self, cls: type[Plugin], *, source: str | None = None, fingerprint: str | None = None
    ) -> Registry:
        """A registry where ``cls.name`` uses this new class (its config revalidated)."""
        check_plugin_class(cls)
        entry = self[cls.name]
        config = validate_config(entry.spec, cls.config_model)
        new = replace(
            entry,
            cls=cls,
            config=config,
            instance=None,
            source=source or entry.source,
            fingerprint=fingerprint,
        )
        return self.with_entry(new)

    def with_spec(self, spec: PluginSpec) -> Registry:
        """A registry where ``spec.name`` has this configuration, validated by its class."""
        entry = self[spec.name]
        config = validate_config(spec, entry.cls.config_model)
        return self.with_entry(replace(entry, spec=spec, config=config))
