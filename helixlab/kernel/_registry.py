"""The registry: the plugin classes the kernel knows, their configuration checked by their models.
Immutable: a change makes a new one, so a reload validates a *proposed* registry first."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pydantic

from ..errors import ConfigError, ConfigProblem, PluginNotFoundError, RegistryError, describe
from ._config import PluginSpec, _unknown_message
from ._fingerprint import Fingerprint
from ._graph import DependencyGraph, Node
from ._plugin import Plugin, check_plugin_class, parse_dependency
from ._secrets import field_aliases, is_secret_key, secret_values

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
        """An entry with its config validated (missing required settings may come later unless
        ``strict``); ``requires``: the class's dependencies and ``depends_on``, merged by name."""
        if spec.required is False and plugin.required:
            message = f"{spec.name!r} guards requests (its class is required): `required: false` "
            message += "cannot make it optional; remove the key, or unregister the plugin to serve "
            message += "without it."
            problem = ConfigProblem(message, spec.source, spec.line, spec.name, "required")
            raise ConfigError([problem], spec.source)
        config, missing = None, tuple[ConfigProblem, ...]()
        try:
            config = validate_config(spec, plugin.config_model)
        except ConfigError as exc:
            if strict or not all(p.kind == "missing" for p in exc.problems):
                raise
            how = f": plugin {plugin.name!r} cannot load without it; set it under `plugins: "
            how += f"{plugin.name}: config:` in the configuration, or with "
            how += f"kernel.configure({plugin.name!r}, {{...}})."
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
        shape = (entry.requires, entry.priority, entry.enabled)  # what the graph's orders read
        same = old is not None and (old.requires, old.priority, old.enabled) == shape
        graph = DependencyGraph(entries, like=self.dependencies if same else None)
        return Registry(entries, secrets, tuple(sorted(guards)), graph)

    def without(self, name: str) -> Registry:
        return Registry.of({n: e for n, e in self.entries.items() if n != name})

    def added(
        self, plugin: type[Plugin] | Plugin, *, spec: PluginSpec | None = None, **where: Any
    ) -> Registry:
        """A registry with ``plugin`` (a class, or an instance for its first load) added; a
        name already taken is refused. ``where``: the entry's origin, source, unit, fingerprint."""
        cls, instance = (type(plugin), plugin) if isinstance(plugin, Plugin) else (plugin, None)
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
        where = {"origin": old.origin, "source": source or old.source, "fingerprint": fingerprint}
        return self.with_entry(Entry.of(cls, old.spec, strict=False, unit=old.unit, **where))

    def with_spec(self, spec: PluginSpec) -> Registry:
        """A registry where ``spec.name`` has this configuration, validated by its class."""
        old = self[spec.name]
        kept = {k: getattr(old, k) for k in ("instance", "origin", "source", "unit", "fingerprint")}
        return self.with_entry(Entry.of(old.cls, spec, strict=True, **kept))


def validate_config(spec: PluginSpec, model: type[pydantic.BaseModel] | None) -> Any:
    """A spec's config validated by the plugin's model, or every problem at the line of its key.
    Unknown keys are refused even where pydantic ignores them (a misspelt setting that does
    nothing is worse) unless ``extra="allow"``; ``config_model = None`` takes none, ``dict`` any."""
    if model is dict:
        return dict(spec.config)
    instance, unknown = None, dict(_unknown_keys(model, spec.config, ()))
    found = [(loc, _unknown_message(loc[-1], keys), "") for loc, keys in unknown.items()]
    if model is None:  # every key is unknown (_unknown_keys finds none without a model)
        why = f"{spec.name} has no config_model, so it takes no config; give it a config model "
        why += "with this field (or `config_model = dict` to take any keys)."
        found = [((key,), f"unknown key {key!r}: {why}", "") for key in spec.config]
    else:
        try:
            instance = model.model_validate(spec.config)
        except pydantic.ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc, kind = tuple(error["loc"]), error["type"]
                if kind == "missing":
                    key = f"required key {loc[-1]!r}" if loc else "a required key"
                    found.append((loc, f"{key} is missing.", "missing"))
                elif kind == "extra_forbidden":
                    if loc not in unknown:
                        found.append((loc, f"unknown key {loc[-1]!r}.", ""))
                else:
                    shown, message = repr(error.get("input")), error["msg"]
                    secret = any(isinstance(part, str) and is_secret_key(part) for part in loc)
                    if not secret and isinstance(error.get("input"), str | int | float):
                        message += f" (got {shown[:60] + '…' if len(shown) > 60 else shown})"
                    found.append((loc, message + ".", ""))
        except BaseException as exc:  # a validator's own error (sys.exit() would end the loop)
            found.append(((), f"its config model raised {describe(exc)}", ""))
    problems, lines = [], spec.lines
    for loc, message, kind in found:  # a missing key has no line: its parent's, or the entry's
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), spec.line)
        path = ".".join(str(part) for part in ("config", *loc))
        problems.append(ConfigProblem(message, spec.source, line, spec.name, path, kind))
    if problems:
        raise ConfigError(problems, spec.source)
    return {} if model is None else instance


def _unknown_keys(annotation: Any, value: Any, loc: tuple) -> list[tuple[tuple, list[str]]]:
    """(key path, valid keys) of every key no field accepts, in the models ``annotation``
    holds (``X | None``, ``list[X]``, ``dict[str, X]``, ``Annotated[X, ...]``)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated or origin in (Union, UnionType):  # Annotated[X, ...], X | None
        options = [a for a in args[: 1 if origin is Annotated else None] if a is not type(None)]
        return _unknown_keys(options[0], value, loc) if len(options) == 1 else []
    if isinstance(value, list | tuple) and args and origin in (list, tuple, Sequence):
        return [p for i, v in enumerate(value) for p in _unknown_keys(args[0], v, (*loc, i))]
    if origin in (dict, Mapping) and len(args) == 2 and isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _unknown_keys(args[1], v, (*loc, k))]
    if not (isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)):
        return []
    config = annotation.model_config
    if not isinstance(value, Mapping) or config.get("extra") == "allow":
        return []
    accepted: dict[str, pydantic.fields.FieldInfo] = {}  # every key the model reads -> field
    for name, info in annotation.model_fields.items():
        aliases = field_aliases(info)
        if config.get("validate_by_alias", True):
            accepted.update(dict.fromkeys(aliases, info))
        if not aliases or config.get("validate_by_name") or config.get("populate_by_name"):
            accepted[name] = info
    found = []
    for key, item in value.items():
        if key in accepted:
            found += _unknown_keys(accepted[key].annotation, item, (*loc, key))
        else:
            found.append(((*loc, key), sorted(accepted)))
    return found
