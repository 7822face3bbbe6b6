"""The registry: which plugin classes the kernel knows, with their configuration.

Immutable: every change makes a new registry, so that a reload can validate a *proposed*
registry completely before anything is committed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError, ConfigProblem, PluginNotFoundError, RegistryError
from ._config import PluginSpec
from ._fingerprint import Fingerprint
from ._graph import DependencyGraph
from ._plugin import Plugin, check_plugin_class, parse_dependency
from ._secrets import secret_values
from ._validation import validate_config

__all__ = ["Entry", "Registry"]


@dataclass(frozen=True)
class Entry:
    """One registered plugin: its class, its configuration and where it came from.

    Made by ``Entry.of``, which validates the configuration and finds its ``secrets`` and
    ``requires``; ``replace()`` it only to change where it came from or its instance.
    """

    cls: type[Plugin]
    spec: PluginSpec
    config: Any = None  # validated config: a config_model instance, or a dict
    instance: Plugin | None = None  # given to register(); used for the first load only
    origin: str = "code"  # code | file | entry-point | builtin | cell
    source: str | None = None  # the file (or cell) that defined the class, for people
    unit: str | None = None  # what a new definition is matched on: a file's root, a cell's id
    fingerprint: Fingerprint | None = None  # the code it reaches: a change reloads it
    missing: tuple[ConfigProblem, ...] = ()  # required settings not given yet: cannot load
    secrets: frozenset[str] = field(kw_only=True)  # the secret values of its configuration
    #: declared (class) plus configured (``depends_on``) dependencies, merged by name
    requires: tuple[tuple[str, str], ...] = field(kw_only=True)

    @classmethod
    def of(cls, plugin: type[Plugin], spec: PluginSpec, *, strict: bool, **where: Any) -> Entry:
        """An entry with its config validated; missing required settings may come later,
        unless ``strict``."""
        missing: tuple[ConfigProblem, ...]
        if spec.required is False and plugin.required:
            message = (
                f"{spec.name!r} guards requests (its class is required): `required: false` "
                f"cannot make it optional; remove the key, or unregister the plugin to serve "
                f"without it."
            )
            problem = ConfigProblem(message, spec.source, spec.line, spec.name, "required")
            raise ConfigError([problem], spec.source)
        config, missing = None, ()
        try:
            config = validate_config(spec, plugin.config_model)
        except ConfigError as exc:
            if strict or not all(p.kind == "missing" for p in exc.problems):
                raise
            missing = tuple(exc.problems)
        model, marked = plugin.config_model, spec.secrets
        found = secret_values(spec.config, model=model, marked=marked)
        found |= secret_values(config, model=model, marked=marked)
        merged: dict[str, str] = {}
        for dep in (*plugin.dependencies, *spec.depends_on):
            name, specifier = parse_dependency(dep, plugin.name)
            if specifier or name not in merged:
                merged[name] = ",".join(s for s in (merged.get(name), specifier) if s)
        requires = tuple(merged.items())
        return cls(
            plugin,
            spec,
            config,
            missing=missing,
            secrets=frozenset(found),
            requires=requires,
            **where,
        )

    def remade(
        self, plugin: type[Plugin], spec: PluginSpec, *, strict: bool, **changes: Any
    ) -> Entry:
        """This entry with another class or configuration, validated anew."""
        where = {"instance": self.instance, "origin": self.origin, "source": self.source}
        where |= {"unit": self.unit, "fingerprint": self.fingerprint} | changes
        return Entry.of(plugin, spec, strict=strict, **where)

    def check_loadable(self) -> None:
        """Raise the ConfigError of the required settings still missing (at load)."""
        if not self.missing:
            return
        name = self.name
        where = (
            f": plugin {name!r} cannot load without it; set it under `plugins: {name}: "
            f"config:` in the configuration, or with kernel.configure({name!r}, {{...}})."
        )
        problems = [replace(p, message=p.message.rstrip(".") + where) for p in self.missing]
        raise ConfigError(problems, self.missing[0].source)

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def version(self) -> str:
        return str(self.cls.version)

    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    @property
    def priority(self) -> int:
        return self.cls.priority if self.spec.priority is None else self.spec.priority

    @property
    def required(self) -> bool:
        """Whether it guards requests: its class says so, or the configuration does."""
        return bool(self.cls.required or self.spec.required)


@dataclass(frozen=True)
class Registry:
    """An immutable mapping of name → :class:`Entry`, and the operations that derive a new one.

    ``secrets``, ``guards`` and the graph describe ``entries``: ``Registry.of`` computes them.
    """

    entries: Mapping[str, Entry] = field(default_factory=dict)
    #: the secret values of every entry's configuration, to mask wherever text leaves
    secrets: frozenset[str] = field(default=frozenset(), compare=False)
    #: the enabled plugins that guard requests (``required``), by name
    guards: tuple[str, ...] = field(default=(), compare=False)
    dependencies: DependencyGraph = field(
        default_factory=lambda: DependencyGraph({}), compare=False, repr=False
    )

    @classmethod
    def of(cls, entries: Mapping[str, Entry]) -> Registry:
        secrets = frozenset().union(*(e.secrets for e in entries.values()))
        guards = tuple(sorted(n for n, e in entries.items() if _guards(e)))
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

    def graph(self) -> DependencyGraph:
        """The dependency graph of these entries."""
        return self.dependencies

    def with_entry(self, entry: Entry) -> Registry:
        """This registry with ``entry`` added or replacing its namesake.

        What was found for the other entries stands (found anew, register() took 2.6x as
        long at 1,000 plugins, and defining 1,000 classes at once grew quadratic).
        """
        entries, old = {**self.entries, entry.name: entry}, self.entries.get(entry.name)
        if old is not None and old.secrets:  # they may be others' too: count them all
            return Registry.of(entries)
        guards = set(self.guards) - {entry.name} | ({entry.name} if _guards(entry) else set())
        secrets = self.secrets | entry.secrets
        return Registry(entries, secrets, tuple(sorted(guards)), DependencyGraph(entries))

    def without(self, name: str) -> Registry:
        return Registry.of({n: e for n, e in self.entries.items() if n != name})

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
        cls: type[Plugin] = type(plugin) if isinstance(plugin, Plugin) else plugin
        check_plugin_class(cls)
        taken = self.entries.get(cls.name)
        if taken is not None:
            at = f" from {taken.source}" if taken.source else ""
            raise RegistryError(
                f"A plugin named {cls.name!r} is already registered ({taken.cls.__qualname__} "
                f"{taken.cls.version}{at}); reload it with kernel.reload(NewClass), or "
                f"unregister it first."
            )
        where = {"origin": origin, "source": source, "unit": unit, "fingerprint": fingerprint}
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
        changes = {"instance": None, "source": source or old.source, "fingerprint": fingerprint}
        return self.with_entry(old.remade(cls, old.spec, strict=False, **changes))

    def with_spec(self, spec: PluginSpec) -> Registry:
        """A registry where ``spec.name`` has this configuration, validated by its class."""
        old = self[spec.name]
        return self.with_entry(old.remade(old.cls, spec, strict=True))


def _guards(entry: Entry) -> bool:
    return entry.required and entry.enabled
