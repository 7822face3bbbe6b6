"""What a change of the live set will do: plan it, checking everything, changing nothing.

:func:`plan` validates the proposed registry (new classes, new config, the whole graph)
and computes the cascade: the targets plus every transitive dependent, dependencies
first. :func:`reload`, :func:`reconfigure` and :func:`define` turn a request into a
:class:`~._transaction.Transaction` (start aside, swap once, drain; see there), the one
code path that ``Kernel.reload``, ``configure``, ``define``, ``apply_config`` and their
``prepare_*`` forms share.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import (
    ConfigError,
    ConfigProblem,
    DependencyError,
    RegistryError,
    ReloadError,
    describe,
)
from . import _discovery
from ._config import PluginSpec, parse_config
from ._fingerprint import Fingerprint, class_fingerprint
from ._graph import DependencyGraph
from ._plugin import Plugin, PluginState, check_plugin_class
from ._registry import Registry
from ._reports import ReloadReport
from ._secrets import secret_values
from ._stored import stored_value_refusal
from ._transaction import Transaction, load_new

__all__ = ["Plan", "apply_config", "define", "plan", "reconfigure", "reload"]


@dataclass
class Plan:
    """What a reload will do: the proposed registry, the cascade and what it will load."""

    targets: list[str]
    registry: Registry
    graph: DependencyGraph
    order: list[str]  # running plugins to replace, dependencies first
    load: list[str] = field(default_factory=list)  # not running: loaded after the swap


def _refuse(
    name: str, exc: BaseException, phase: str = "validate", what: str = "Reload"
) -> ReloadError:
    """The error of a reload (or a new definition) refused before anything changed."""
    return ReloadError(
        name,
        phase,
        f"{what} of {name!r} refused: {describe(exc)} The running versions are unchanged.",
        cause=exc,
    )


def plan(
    kernel, targets: Iterable[str | type[Plugin]], *, cascade: bool = True, registry=None
) -> Plan:
    """Validate a reload of ``targets`` and return its plan; raises ReloadError, changes nothing."""
    registry = registry or kernel._registry
    names: list[str] = []
    for target in targets:
        if isinstance(target, type):
            name = getattr(target, "name", "") or target.__qualname__
            if name not in registry:
                raise ReloadError(
                    name,
                    "validate",
                    f"Cannot reload {name!r}: no plugin of that name is registered "
                    f"(registered: {', '.join(sorted(registry)) or 'none'}). Register it first.",
                )
            try:
                registry = registry.with_class(target)
            except (ConfigError, RegistryError) as exc:
                if isinstance(exc, ConfigError):
                    raise stored_value_refusal(registry[name], target, exc) or _refuse(
                        name, exc, "config"
                    ) from None
                raise _refuse(name, exc) from None
        elif isinstance(target, str):
            registry[target]
            name = target
        else:
            raise TypeError(f"reload() takes plugin names or Plugin classes, not {target!r}")
        if name not in names:
            names.append(name)
    if not names:
        raise TypeError("reload() needs at least one plugin name or class")
    graph = registry.graph()
    try:
        graph.validate()
    except DependencyError as exc:
        raise _refuse(names[0], exc) from None
    for name in names:
        if not graph.nodes[name].enabled:
            raise _refuse(name, DependencyError(f"Plugin {name!r} is disabled.", plugins=(name,)))

    live = kernel._pool.current.live
    wanted = set(names)
    cascade_order = (
        graph.reload_order(names) if cascade else [n for n in graph.load_order() if n in wanted]
    )
    order = [n for n in cascade_order if n in live]
    waiting = (PluginState.FAILED, PluginState.REGISTERED)
    load = [
        n
        for n in cascade_order
        if n not in live
        and graph.nodes[n].enabled
        and (n in wanted or kernel._states.get(n) in waiting)
    ]
    available = set(live) | set(order)
    for name in order:
        entry = registry[name]
        try:
            entry.check_loadable()
        except ConfigError as exc:
            raise _refuse(name, exc, "config") from None
        for dep, _ in entry.requires:
            if dep not in available:
                raise _refuse(
                    name,
                    DependencyError(
                        f"Plugin {name!r} needs {dep!r}, which is not running.",
                        plugins=(name, dep),
                    ),
                )
    return Plan(names, registry, graph, order, load)


def reconfigure(kernel, spec: PluginSpec) -> Transaction:
    """A change to ``spec`` (validated now), reloading its plugin with dependents if running."""
    registry = kernel._registry.with_spec(spec)

    async def configured(report: ReloadReport) -> None:
        kernel._emit("configured", spec.name, detail=f"from {spec.source}")

    if spec.name not in kernel._pool.current.live:
        return Transaction(kernel, None, registry, configured)
    return Transaction(kernel, plan(kernel, [spec.name], registry=registry), registry, configured)


def define(
    kernel,
    classes: list[type[Plugin]],
    source: str,
    origin: str,
    unit: str | None,
    fingerprints: Mapping[str, Fingerprint],
) -> Transaction:
    """A change registering new classes and reloading changed ones (see ``Kernel.define``)."""
    if not classes:
        raise RegistryError(f"{source} defines no Plugin subclass with a `name`.")
    names = [cls.name for cls in classes]
    for cls in classes:
        check_plugin_class(cls)
        if names.count(cls.name) > 1:
            raise RegistryError(f"{source} defines the plugin name {cls.name!r} more than once.")
    registry: Registry = kernel._registry
    if unit is not None:
        gone = [n for n, e in registry.entries.items() if e.unit == unit and n not in names]
        if gone:
            raise ReloadError(
                gone[0],
                "validate",
                f"{source} no longer defines {', '.join(map(repr, gone))} (it defines "
                f"{', '.join(map(repr, names))}); renaming or removing a plugin is not a reload. "
                f"Keep the name, or unregister {gone[0]!r} first. The running versions are "
                f"unchanged.",
            )
    prints = {cls.name: fingerprints.get(cls.name) or class_fingerprint(cls) for cls in classes}
    new, changed = [], []
    reasons: dict[str, list[str]] = {}  # a changed plugin: the names whose code changed
    for cls in classes:
        if cls.name not in registry:
            new.append(cls.name)
            spec = kernel._pending.get(cls.name)
            registry = registry.added(
                cls,
                origin=origin,
                source=source,
                spec=spec,
                unit=unit,
                fingerprint=prints[cls.name],
            )
            continue
        entry = registry[cls.name]
        if unit is not None and entry.unit not in (None, unit) and entry.origin == "file":
            raise ReloadError(
                cls.name,
                "validate",
                f"{source} defines {cls.name!r}, which is already defined in {entry.source}; "
                f"plugin names must be unique. The running versions are unchanged.",
            )
        failed = kernel._states.get(cls.name) == PluginState.FAILED
        if entry.fingerprint != prints[cls.name] or failed:
            changed.append(cls.name)
            if entry.fingerprint != prints[cls.name]:
                reasons[cls.name] = prints[cls.name].changed(entry.fingerprint)
            try:
                registry = registry.with_class(cls, source=source, fingerprint=prints[cls.name])
            except (ConfigError, RegistryError) as exc:
                if isinstance(exc, ConfigError):
                    raise stored_value_refusal(entry, cls, exc) or _refuse(
                        cls.name, exc, "config"
                    ) from None
                raise _refuse(cls.name, exc) from None
            registry = registry.with_entry(replace(registry[cls.name], unit=unit, origin=origin))
    try:
        registry.graph().validate()
    except DependencyError as exc:
        what = "Reload" if changed else "Definition"
        raise _refuse((changed or new)[0], exc, what=what) from None

    async def finish(report: ReloadReport) -> None:
        if new and the_plan is None:  # nothing reloaded: the cascade is what this loads
            kernel.last_cascade = ()
        for name in new:
            kernel._pending.pop(name, None)
            kernel._states[name] = PluginState.REGISTERED
            kernel._reloads.setdefault(name, 0)
            kernel._emit("registered", name, detail=f"{registry[name].cls.kind} from {source}")
        if new:
            for name in new:
                report.versions.setdefault(name, ("-", str(registry[name].cls.version)))
            await load_new(kernel, new, new, report)

    the_plan = plan(kernel, changed, registry=registry) if changed else None
    txn = Transaction(kernel, the_plan, registry, finish)
    txn.report.changes = reasons
    return txn


def reload(
    kernel, targets: list, registry: Registry | None = None, cascade: bool = True
) -> Transaction:
    """A change reloading ``targets`` (with their dependents, if ``cascade``)."""
    the_plan = plan(kernel, targets, cascade=cascade, registry=registry)
    return Transaction(kernel, the_plan, the_plan.registry)


def _with_builtin_dependencies(registry: Registry) -> Registry:
    """Add, with their defaults, the built-in plugins that configured ones depend on."""
    missing = True
    while missing:
        missing = {
            dep
            for entry in registry.entries.values()
            for dep, _ in entry.requires
            if dep not in registry and _discovery.builtin_plugin(dep) is not None
        }
        for dep in sorted(missing):
            registry = registry.added(_discovery.builtin_plugin(dep), origin="builtin")
    return registry


def _graph_problems(exc: DependencyError, doc: Any) -> list[ConfigProblem]:
    """Each dependency problem, placed at the entry of a plugin it involves in ``doc``."""
    problems = []
    for problem in exc.problems:
        named = [n for n in problem.plugins if n in doc.plugins] or [None]
        spec = doc.plugins.get(named[0])
        line = spec.line if spec is not None else None
        problems.append(ConfigProblem(str(problem), doc.source, line, named[0]))
    return problems


def apply_config(
    kernel, data: str | os.PathLike | Mapping, *, source: str | None, line_offset: int
) -> Transaction:
    """A change applying a YAML configuration (see ``Kernel.apply_config``)."""
    proposed = kernel._registry
    live = kernel._pool.current.live
    pending: dict[str, PluginSpec] = {}

    def check(spec: PluginSpec) -> list[ConfigProblem]:
        nonlocal proposed
        name = spec.name
        known = proposed.entries.get(name)
        kernel._learn(spec, known.cls if known else _discovery.builtin_plugin(name))
        if not spec.enabled and name in live:
            message = f"{name!r} is running; unload it before disabling it"
            return [ConfigProblem(message, spec.source, spec.line, name, "enabled")]
        try:
            if name in proposed:
                proposed = proposed.with_spec(spec)
            elif (builtin := _discovery.builtin_plugin(name)) is not None:
                proposed = proposed.added(builtin, origin="builtin", spec=spec)
            else:  # kept until a class of that name is registered (a later cell, a file)
                pending[name] = spec
        except ConfigError as exc:
            return exc.problems
        return []

    doc = parse_config(data, source=source, line_offset=line_offset, check=check)
    kernel._secrets.learn(secret_values(doc.gateway))  # e.g. an admin key: errors may quote it
    proposed = _with_builtin_dependencies(proposed)
    try:  # a cycle or a missing dependency: refused now, with its line, not at load
        proposed.graph().validate()
    except DependencyError as exc:
        raise ConfigError(_graph_problems(exc, doc), doc.source) from exc
    old = kernel._registry
    changed = [n for n in doc.plugins if n in old and old[n].spec != proposed[n].spec]
    added = [n for n in proposed if n not in old]
    running = [n for n in changed if n in live]

    async def finish(report: ReloadReport) -> None:
        for name in added:
            kernel._states[name] = PluginState.REGISTERED
            kernel._reloads.setdefault(name, 0)
            kernel._emit("registered", name, detail="built in, from config")
        for name in changed:
            kernel._emit("configured", name, detail=f"from {doc.source}")
        for name, spec in pending.items():
            kernel._pending[name] = spec
            kernel._emit(
                "configured", name, detail=f"from {doc.source}; kept until {name!r} is registered"
            )

    the_plan = plan(kernel, running, registry=proposed) if running else None
    return Transaction(kernel, the_plan, proposed, finish)


def unregistered(kernel) -> ConfigError | None:
    """The error for configured plugins that nothing registered (``load_all`` raises it)."""
    if not kernel._pending:
        return None
    known = ", ".join(sorted({*kernel._registry, *_discovery.builtin_names()})) or "none"
    looked = ", ".join(["the built-ins", *kernel._looked])
    problems = [
        ConfigProblem(
            f"no plugin named {name!r} is registered or built in (known: {known}; looked "
            f"in {looked}); its configuration is kept until one is. Add the directory "
            f"holding it with `helixlab serve CONFIG --plugins DIR` or a top-level "
            f"`plugin_dirs:` list, or install a package publishing it under the "
            f"'helixlab.plugins' entry point",
            spec.source,
            spec.line,
            name,
        )
        for name, spec in sorted(kernel._pending.items())
    ]
    return ConfigError(problems, problems[0].source)
