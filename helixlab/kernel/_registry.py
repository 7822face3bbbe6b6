"""The registry: which plugin classes the kernel knows, with their configuration. Immutable:
a change makes a new one, so a reload validates a *proposed* registry before committing it."""

from __future__ import annotations

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


@dataclass(frozen=True, kw_only=True)
class Entry(Node):
    """One registered plugin (the graph's node): its class, configuration and origin. Made by
    ``Entry.of``; ``replace()`` it only to change where it came from or its instance."""

    cls: type[Plugin]
    spec: PluginSpec
    config: Any = None  # validated config: a config_model instance, or a dict
    instance: Plugin | None = None  # given to register(); used for the first load only
    origin: str = "code"  # code | file | entry-point | builtin | cell
    source: str | None = None  # the file (or cell) that defined the class, for people
    unit: str | None = None  # what a new definition is matched on: a file's root, a cell's id
    fingerprint: Fingerprint | None = None  # the code it reaches: a change reloads it
    missing: tuple[ConfigProblem, ...] = ()  # required settings not given yet: cannot load
    secrets: frozenset[str]  # the secret values of its configuration

    @classmethod
    def of(cls, plugin: type[Plugin], spec: PluginSpec, *, strict: bool, **where: Any) -> Entry:
        """An entry with its config validated; missing required settings may come later,
        unless ``strict``. ``requires``: the class's dependencies and the configured
        ``depends_on``, merged by name."""
        if spec.required is False and plugin.required:
            message = (
                f"{spec.name!r} guards requests (its class is required): `required: false` "
                f"cannot make it optional; remove the key, or unregister the plugin to serve "
                f"without it."
            )
            problem = ConfigProblem(message, spec.source, spec.line, spec.name, "required")
            raise ConfigError([problem], spec.source)
        config, missing = None, tuple[ConfigProblem, ...]()
        try:
            config = validate_config(spec, plugin.config_model)
        except ConfigError as exc:
            if strict or not all(p.kind == "missing" for p in exc.problems):
                raise
            how = (
                f": plugin {plugin.name!r} cannot load without it; set it under `plugins: "
                f"{plugin.name}: config:` in the configuration, or with "
                f"kernel.configure({plugin.name!r}, {{...}})."
            )
            missing = tuple(replace(p, message=p.message.rstrip(".") + how) for p in exc.problems)
        model, marked = plugin.config_model, spec.secrets
        found = secret_values(spec.config, model=model, marked=marked)  # as written
        secrets = frozenset(found | secret_values(config, model=model, marked=marked))  # validated
        merged: dict[str, str] = {}
        for dep in (*plugin.dependencies, *spec.depends_on):
            name, specifier = parse_dependency(dep, plugin.name)
            if specifier or name not in merged:
                merged[name] = ",".join(s for s in (merged.get(name), specifier) if s)
        priority = plugin.priority if spec.priority is None else spec.priority
        node = (plugin.name, str(plugin.version), priority, spec.enabled, tuple(merged.items()))
        return cls(
            *node, cls=plugin, spec=spec, config=config, missing=missing, secrets=secrets, **where
        )

    def check_loadable(self) -> None:
        """Raise the ConfigError of the required settings still missing (at load)."""
        if self.missing:
            raise ConfigError(list(self.missing), self.missing[0].source)

    @property
    def required(self) -> bool:
        """Whether it guards requests: its class says so, or the configuration does."""
        return bool(self.cls.required or self.spec.required)


@dataclass(frozen=True)
class Registry:
    """An immutable mapping of name → :class:`Entry`, and the operations that derive a new one.
    ``secrets`` (every entry's secret values), ``guards`` (the enabled plugins that guard
    requests) and the graph describe ``entries``: made by ``Registry.of`` (or empty)."""

    entries: Mapping[str, Entry] = field(default_factory=dict)
    secrets: frozenset[str] = field(default=frozenset(), compare=False)
    guards: tuple[str, ...] = field(default=(), compare=False)
    dependencies: DependencyGraph = field(
        default_factory=lambda: DependencyGraph({}), compare=False, repr=False
    )

    def __post_init__(self) -> None:  # Registry(entries) would know none of their secrets
        if len(self.dependencies) != len(self.entries):
            raise TypeError("make a registry of entries with Registry.of(entries)")

    @classmethod
    def of(cls, entries: Mapping[str, Entry]) -> Registry:
        secrets = frozenset().union(*(e.secrets for e in entries.values()))
        guards = tuple(sorted(n for n, e in entries.items() if e.required and e.enabled))
        return cls(entries, secrets, guards, DependencyGraph(entries))

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

    def graph(self) -> DependencyGraph:  # of these entries
        return self.dependencies

    def with_entry(self, entry: Entry) -> Registry:
        """This registry with ``entry`` added or replacing its namesake. What was found for the
        others stands (found anew, register() at 1,000 plugins took 320 µs, not 73: measured)."""
        name, old = entry.name, self.entries.get(entry.name)
        entries = {**self.entries, name: entry}
        if old is not None and old.secrets:  # they may be others' too: count them all
            return Registry.of(entries)
        guards = {*self.guards} - {name} | ({name} if entry.required and entry.enabled else set())
        secrets = self.secrets | entry.secrets
        return Registry(entries, secrets, tuple(sorted(guards)), DependencyGraph(entries))

    def without(self, name: str) -> Registry:
        return Registry.of({n: e for n, e in self.entries.items() if n != name})

    def added(
        self, plugin: type[Plugin] | Plugin, *, spec: PluginSpec | None = None, **where: Any
    ) -> Registry:
        """A registry with ``plugin`` (a class, or an instance for its first load) added; a
        name already taken is refused. ``where``: the entry's origin, source, unit, fingerprint."""
        instance = plugin if isinstance(plugin, Plugin) else None
        cls: type[Plugin] = type(plugin) if isinstance(plugin, Plugin) else plugin
        check_plugin_class(cls)
        if (taken := self.entries.get(cls.name)) is not None:
            at = f" from {taken.source}" if taken.source else ""
            raise RegistryError(
                f"A plugin named {cls.name!r} is already registered ({taken.cls.__qualname__} "
                f"{taken.cls.version}{at}); reload it with kernel.reload(NewClass), or "
                f"unregister it first."
            )
        spec = spec or PluginSpec(name=cls.name)
        return self.with_entry(Entry.of(cls, spec, strict=False, instance=instance, **where))

    def with_class(
        self,
        cls: type[Plugin],
        *,
        source: str | None = None,
        fingerprint: Fingerprint | None = None,
    ) -> Registry:
        """A registry where ``cls.name`` uses this new class (its config revalidated)."""
        check_plugin_class(cls)
        old = self[cls.name]
        where = {"origin": old.origin, "source": source or old.source, "unit": old.unit}
        entry = Entry.of(cls, old.spec, strict=False, fingerprint=fingerprint, **where)
        return self.with_entry(entry)

    def with_spec(self, spec: PluginSpec) -> Registry:
        """A registry where ``spec.name`` has this configuration, validated by its class."""
        old = self[spec.name]
        kept = {k: getattr(old, k) for k in ("instance", "origin", "source", "unit", "fingerprint")}
        return self.with_entry(Entry.of(old.cls, spec, strict=True, **kept))
