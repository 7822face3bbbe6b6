"""The registry: which plugin classes the kernel knows, with their configuration.

Entries are immutable; changing the registry means building a new mapping, so that a
reload can validate a *proposed* registry completely before anything is committed.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError, ConfigProblem, PluginNotFoundError, RegistryError
from ._config import PluginSpec
from ._fingerprint import Fingerprint
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
    fingerprint: Fingerprint | None = None  # the code it reaches: a change reloads it
    missing: tuple[ConfigProblem, ...] = ()  # required settings not given yet: cannot load

    def check_loadable(self) -> None:
        """Raise the ConfigError of the required settings still missing (at load)."""
        if not self.missing:
            return
        name = self.name
        problems = [
            replace(
                p,
                message=f"{p.message.rstrip('.')}: plugin {name!r} cannot load without it; set "
                f"it under `plugins: {name}: config:` in the configuration, or with "
                f"kernel.configure({name!r}, {{...}}).",
            )
            for p in self.missing
        ]
        raise ConfigError(problems, self.missing[0].source)

    @property
    def name(self) -> str:
        return self.cls.name

    @functools.cached_property
    def secrets(self) -> frozenset[str]:
        """The secret values in this entry's configuration (computed once per entry)."""
        model, marked = self.cls.config_model, self.spec.secrets
        raw = secret_values(self.spec.config, model=model, marked=marked)
        return frozenset(raw | secret_values(self.config, model=model, marked=marked))

    @functools.cached_property
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

    @property
    def required(self) -> bool:
        """Whether it guards requests: its class says so, or the configuration does."""
        return bool(self.cls.required or self.spec.required)

    @functools.cached_property
    def _node(self) -> Node:
        return Node(
            name=self.name,
            version=str(self.cls.version),
            priority=self.priority,
            enabled=self.spec.enabled,
            requires=self.requires,
        )

    def node(self) -> Node:
        """This entry as the graph sees it (computed once per entry)."""
        return self._node


class _Entries(Mapping[str, "Entry"]):
    """An immutable name -> Entry mapping; adding a name shares storage with the original.

    The first ``n`` names of an append-only list (with a dict beside it) are this mapping;
    adding a name to the newest mapping on that storage appends instead of copying, so that
    registering n plugins costs O(n), not O(n²). Iteration walks the list (safe while the
    kernel's thread appends beyond ``n``); replacing or removing a name copies.
    """

    __slots__ = ("_data", "_n", "_order", "_pos")

    def __init__(self, data: dict, order: list, pos: dict, n: int):
        self._data, self._order, self._pos, self._n = data, order, pos, n

    @classmethod
    def of(cls, mapping: Mapping[str, Entry]) -> _Entries:
        data = dict(mapping)
        order = list(data)
        return cls(data, order, {name: i for i, name in enumerate(order)}, len(order))

    def plus(self, name: str, entry: Entry) -> _Entries:
        if name not in self and len(self._order) == self._n:  # the newest: append
            self._data[name] = entry
            self._pos[name] = self._n
            self._order.append(name)
            return _Entries(self._data, self._order, self._pos, self._n + 1)
        changed = dict(self.items())
        changed[name] = entry
        return _Entries.of(changed)

    def __getitem__(self, name: str) -> Entry:
        if self._pos.get(name, self._n) < self._n:
            return self._data[name]
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return self._pos.get(name, self._n) < self._n  # type: ignore[call-overload]

    def __iter__(self) -> Iterator[str]:
        return itertools.islice(self._order, self._n)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{n!r}: ...' for n in self)}}}"


@dataclass(frozen=True)
class Registry:
    """An immutable mapping of name → :class:`Entry`, with the operations that derive a new one."""

    entries: Mapping[str, Entry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.entries, _Entries):
            object.__setattr__(self, "entries", _Entries.of(self.entries))

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

    # computed once per registry: functools.cached_property keeps the answer in the
    # instance's __dict__, which a frozen dataclass leaves writable to it
    @functools.cached_property
    def secrets(self) -> frozenset[str]:
        """The secret values in every entry's configuration (to mask wherever text leaves)."""
        return frozenset().union(*(e.secrets for e in self.entries.values()))

    @functools.cached_property
    def guards(self) -> tuple[str, ...]:
        """The enabled plugins that guard requests (``required``), by name."""
        return tuple(sorted(n for n, e in self.entries.items() if e.required and e.spec.enabled))

    def graph(self) -> DependencyGraph:
        """The dependency graph of these entries (built once per registry: it is immutable).

        A registry that replaced one entry of a registry whose graph was built derives its
        graph from that one (a re-run cell, a saved file, a configure: one plugin changes).
        """
        graph = self.__dict__.get("_graph")
        if graph is None:
            parent = self.__dict__.get("_parent")
            if parent is not None:
                graph = parent[0].with_node(self.entries[parent[1]].node())
            else:
                graph = DependencyGraph({n: entry.node() for n, entry in self.entries.items()})
            object.__setattr__(self, "_graph", graph)
            object.__setattr__(self, "_parent", None)
        return graph

    def with_entry(self, entry: Entry) -> Registry:
        new = Registry(self.entries.plus(entry.name, entry))
        known = self.__dict__.get("_secrets")
        replaced = self.entries.get(entry.name)
        if known is not None and (replaced is None or not replaced.secrets):
            object.__setattr__(new, "_secrets", known | entry.secrets)  # no rescan of all
        graph = self.__dict__.get("_graph")
        if replaced is not None and graph is not None:  # the graph, not the registry: no chain
            object.__setattr__(new, "_parent", (graph, entry.name))
        return new

    def without(self, name: str) -> Registry:
        return Registry({n: e for n, e in self.entries.items() if n != name})

    def added(
        self,
        plugin: type[Plugin] | Plugin,
        *,
        origin: str = "code",
        source: str | None = None,
        spec: PluginSpec | None = None,
        unit: str | None = None,
        fingerprint: Fingerprint | None = None,
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
        config, missing = _validated(spec, cls)
        entry = Entry(cls, spec, config, instance, origin, source, unit, fingerprint, missing)
        return self.with_entry(entry)

    def with_class(
        self,
        cls: type[Plugin],
        *,
        source: str | None = None,
        fingerprint: Fingerprint | None = None,
    ) -> Registry:
        """A registry where ``cls.name`` uses this new class (its config revalidated)."""
        check_plugin_class(cls)
        entry = self[cls.name]
        config, missing = _validated(entry.spec, cls)
        new = replace(
            entry,
            cls=cls,
            config=config,
            instance=None,
            source=source or entry.source,
            fingerprint=fingerprint,
            missing=missing,
        )
        return self.with_entry(new)

    def with_spec(self, spec: PluginSpec) -> Registry:
        """A registry where ``spec.name`` has this configuration, validated by its class."""
        entry = self[spec.name]
        _check_required(spec, entry.cls)
        config = validate_config(spec, entry.cls.config_model)
        return self.with_entry(replace(entry, spec=spec, config=config, missing=()))


def _validated(spec: PluginSpec, cls: type[Plugin]) -> tuple[Any, tuple[ConfigProblem, ...]]:
    """The validated config, or None and the required keys missing (they may come later)."""
    _check_required(spec, cls)
    try:
        return validate_config(spec, cls.config_model), ()
    except ConfigError as exc:
        if not all(p.kind == "missing" for p in exc.problems):
            raise
        return None, tuple(exc.problems)


def _check_required(spec: PluginSpec, cls: type[Plugin]) -> None:
    """``required: false`` cannot make a plugin that guards requests optional."""
    if spec.required is False and cls.required:
        problem = ConfigProblem(
            f"{spec.name!r} guards requests (its class is required): `required: false` cannot "
            f"make it optional; remove the key, or unregister the plugin to serve without it.",
            spec.source,
            spec.line,
            spec.name,
            "required",
        )
        raise ConfigError([problem], spec.source)
