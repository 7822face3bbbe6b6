"""What a change of the live set will do (:func:`plan`: check everything, change nothing,
compute the cascade), and the :class:`~._transaction.Transaction` of each kind of Change."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..errors import (
    ConfigError,
    ConfigProblem,
    DependencyError,
    RegistryError,
    ReloadError,
    describe,
)
from . import _builtins
from ._book import Book
from ._change import Change
from ._config import PluginSpec, parse_config
from ._fingerprint import class_fingerprint
from ._lifecycle import Runner
from ._live import LivePool
from ._plugin import Plugin, PluginState, check_plugin_class
from ._registry import Entry, Registry
from ._secrets import secret_values, split_marked
from ._transaction import Plan, Transaction

__all__ = ["Plan", "apply_config", "define", "plan", "reconfigure", "reload"]


def _refuse(
    name: str, exc: BaseException, phase: str = "validate", what: str = "Reload"
) -> ReloadError:
    """The error of a reload (or a new definition) refused before anything changed."""
    message = f"{what} of {name!r} refused: {describe(exc)} The running versions are unchanged."
    return ReloadError(name, phase, message, cause=exc)


def _with_class(registry: Registry, entry: Entry, cls: type[Plugin], **how: Any) -> Registry:
    """``registry`` with ``cls`` replacing ``entry``'s class, or the refusal of the reload."""
    try:
        return registry.with_class(cls, **how)
    except ConfigError as exc:
        raise stored_value_refusal(entry, cls, exc) or _refuse(entry.name, exc, "config") from None
    except RegistryError as exc:
        raise _refuse(entry.name, exc) from None


def plan(
    book: Book,
    pool: LivePool,
    targets: Iterable[str | type[Plugin]],
    *,
    cascade: bool = True,
    registry: Registry | None = None,
) -> Plan:
    """Validate a reload of ``targets`` and return its plan; raises ReloadError, changes nothing."""
    registry = registry or book.registry
    names: list[str] = []
    for target in targets:
        if isinstance(target, type):
            name = getattr(target, "name", "") or target.__qualname__
            if name not in registry:
                known = ", ".join(sorted(registry)) or "none"
                message = f"Cannot reload {name!r}: no plugin of that name is registered "
                message += f"(registered: {known}). Register it first."
                raise ReloadError(name, "validate", message)
            registry = _with_class(registry, registry[name], target)
        elif isinstance(target, str):
            name = registry[target].name
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

    live = pool.current.live
    cascade_order = (
        graph.reload_order(names) if cascade else [n for n in graph.load_order() if n in names]
    )
    order = [n for n in cascade_order if n in live]
    waiting = (PluginState.FAILED, PluginState.REGISTERED)
    load = [n for n in cascade_order if n not in live and (n in names or book.state(n) in waiting)]
    for name in order:
        entry = registry[name]
        try:
            entry.check_loadable()
        except ConfigError as exc:
            raise _refuse(name, exc, "config") from None
        if down := [d for d, _ in entry.requires if d not in live]:
            message = f"Plugin {name!r} needs {down[0]!r}, which is not running."
            raise _refuse(name, DependencyError(message, plugins=(name, down[0])))
    return Plan(names, registry, order, load)


def reconfigure(book: Book, pool: LivePool, runner: Runner, spec: PluginSpec) -> Transaction:
    """A change to ``spec`` (validated now), reloading its plugin with dependents if running."""
    registry = book.registry.with_spec(spec)
    running = spec.name in pool.current.live
    the_plan = plan(book, pool, [spec.name], registry=registry) if running else None
    txn = Transaction(book, pool, runner, the_plan, registry)
    txn.configured[spec.name] = f"from {spec.source}"
    return txn


def define(book: Book, pool: LivePool, runner: Runner, change: Change) -> Transaction:
    """A change registering new classes and reloading changed ones (see ``Change.define``)."""
    classes, source, origin, unit = change.classes, change.source or "", change.origin, change.unit
    if not classes:
        raise RegistryError(f"{source} defines no Plugin subclass with a `name`.")
    names = [cls.name for cls in classes]
    for cls in classes:
        check_plugin_class(cls)
        if names.count(cls.name) > 1:
            raise RegistryError(f"{source} defines the plugin name {cls.name!r} more than once.")
    registry = book.registry
    if unit is not None:
        gone = [n for n, e in registry.entries.items() if e.unit == unit and n not in names]
        if gone:
            message = (
                f"{source} no longer defines {', '.join(map(repr, gone))} (it defines "
                f"{', '.join(map(repr, names))}); renaming or removing a plugin is not a reload. "
                f"Keep the name, or unregister {gone[0]!r} first. The running versions are "
                f"unchanged."
            )
            raise ReloadError(gone[0], "validate", message)
    new, changed = [], []
    reasons: dict[str, list[str]] = {}  # a changed plugin: the names whose code changed
    for cls in classes:
        name, printed = cls.name, change.fingerprints.get(cls.name) or class_fingerprint(cls)
        if name not in registry:
            new.append(name)
            how = {"origin": origin, "source": source, "unit": unit, "fingerprint": printed}
            registry = registry.added(cls, spec=book.pending.get(name), **how)
            continue
        entry = registry[name]
        if unit is not None and entry.unit not in (None, unit) and entry.origin == "file":
            message = (
                f"{source} defines {name!r}, which is already defined in {entry.source}; "
                f"plugin names must be unique. The running versions are unchanged."
            )
            raise ReloadError(name, "validate", message)
        if entry.fingerprint != printed:
            reasons[name] = printed.changed(entry.fingerprint)
        elif book.state(name) != PluginState.FAILED:
            continue  # unchanged: nothing to do
        changed.append(name)
        registry = _with_class(registry, entry, cls, source=source, fingerprint=printed)
        registry = registry.with_entry(replace(registry[name], unit=unit, origin=origin))
    try:
        registry.graph().validate()
    except DependencyError as exc:
        what = "Reload" if changed else "Definition"
        raise _refuse((changed or new)[0], exc, what=what) from None
    the_plan = plan(book, pool, changed, registry=registry) if changed else None
    txn = Transaction(book, pool, runner, the_plan, registry)
    txn.registered = {name: f"{registry[name].cls.kind} from {source}" for name in new}
    txn.new, txn.report.changes = new, reasons
    return txn


def reload(book: Book, pool: LivePool, runner: Runner, change: Change) -> Transaction:
    """A change reloading its targets (with their dependents, if ``change.cascade``)."""
    the_plan = plan(book, pool, change.targets, cascade=change.cascade)
    return Transaction(book, pool, runner, the_plan, the_plan.registry)


def apply_config(book: Book, pool: LivePool, runner: Runner, change: Change) -> Transaction:
    """A change applying a YAML configuration (see ``Change.apply_config``)."""
    proposed = book.registry
    live = pool.current.live
    pending: dict[str, PluginSpec] = {}

    def check(spec: PluginSpec) -> list[ConfigProblem]:
        nonlocal proposed
        name, known = spec.name, proposed.entries.get(spec.name)
        cls = known.cls if known else _builtins.builtin_plugin(name)
        book.learn(spec, cls)
        if not spec.enabled and name in live:
            message = f"{name!r} is running; unload it before disabling it"
            return [ConfigProblem(message, spec.source, spec.line, name, "enabled")]
        try:
            if known is not None:
                proposed = proposed.with_spec(spec)
            elif cls is not None:
                proposed = proposed.added(cls, origin="builtin", spec=spec)
            else:  # kept until a class of that name is registered (a later cell, a file)
                pending[name] = spec
        except ConfigError as exc:
            return exc.problems
        return []

    document, source, line_offset = change.document, change.source, change.line_offset
    doc = parse_config(document, source=source, line_offset=line_offset, check=check)
    book.secrets.learn(secret_values(doc.gateway))  # e.g. an admin key: errors may quote it
    while missing := {  # the built-in plugins that configured ones depend on, with defaults
        dep: cls
        for entry in proposed.entries.values()
        for dep, _ in entry.requires
        if dep not in proposed and (cls := _builtins.builtin_plugin(dep)) is not None
    }:
        for dep in sorted(missing):
            proposed = proposed.added(missing[dep], origin="builtin")
    try:  # a cycle or a missing dependency: refused now, at the line of a plugin it involves
        proposed.graph().validate()
    except DependencyError as exc:
        problems = []
        for problem in exc.problems:
            named = next((n for n in problem.plugins if n in doc.plugins), None)
            line = doc.plugins[named].line if named is not None else None
            problems.append(ConfigProblem(str(problem), doc.source, line, named))
        raise ConfigError(problems, doc.source) from exc
    old = book.registry
    changed = [n for n in doc.plugins if n in old and old[n].spec != proposed[n].spec]
    added = [n for n in proposed if n not in old]
    running = [n for n in changed if n in live]
    the_plan = plan(book, pool, running, registry=proposed) if running else None
    txn = Transaction(book, pool, runner, the_plan, proposed)
    txn.registered = dict.fromkeys(added, "built in, from config")
    txn.configured = dict.fromkeys(changed, f"from {doc.source}")
    txn.configured |= {n: f"from {doc.source}; kept until {n!r} is registered" for n in pending}
    txn.pending = pending
    return txn


def unregistered(book: Book) -> ConfigError | None:
    """The error for configured plugins that nothing registered (``load_all`` raises it)."""
    if not book.pending:
        return None
    known = ", ".join(sorted({*book.registry, *_builtins.builtin_names()})) or "none"
    looked = ", ".join(["the built-ins", *book.looked])
    why = (
        f"is registered or built in (known: {known}; looked in {looked}); its configuration "
        "is kept until one is. Add the directory holding it with `helixlab serve CONFIG "
        "--plugins DIR` or a top-level `plugin_dirs:` list, or install a package publishing "
        "it under the 'helixlab.plugins' entry point"
    )
    problems = [
        ConfigProblem(f"no plugin named {name!r} {why}", spec.source, spec.line, name)
        for name, spec in sorted(book.pending.items())
    ]
    return ConfigError(problems, problems[0].source)


def stored_value_refusal(entry: Entry, cls: type[Plugin], exc: ConfigError) -> ReloadError | None:
    """The refusal of ``cls`` when only values stored earlier in ``entry``'s config (which
    outlives its class) block it: naming them, where they were set, and how to clear them.
    None when its model refuses its own defaults too, or a blocked value has no default."""
    spec, model = entry.spec, getattr(cls, "config_model", None)  # any class: duck-typed
    fields = getattr(model, "model_fields", None)
    if not spec.config or model is None or fields is None:
        return None
    blocked: dict[str, Any] = {}
    for problem in exc.problems:
        head, _, rest = problem.path.partition(".")  # "config.level.x", or "level"
        key = rest.partition(".")[0] if head == "config" else None if rest else head
        if key not in spec.config or key not in fields or fields[key].is_required():
            return None
        blocked[key] = fields[key].get_default(call_default_factory=True)
    try:  # the defaults themselves must be accepted, else the model is at fault
        model.model_validate({k: v for k, v in spec.config.items() if k not in blocked})
    except BaseException:
        return None
    name = cls.name
    secret = {path[0] for path in spec.secrets if path}
    values = ", ".join(
        f"{key}={'<secret>' if key in secret else repr(spec.config[key])}" for key in blocked
    )
    reasons = "; ".join(
        f"{p.path.removeprefix('config.')}: {p.message.rstrip('.')}" for p in exc.problems
    )
    if spec.source == "configure()":
        where, fix = "with configure()", f"clear it with helix.configure({name!r}, {blocked!r})"
        fix += " (the new defaults)"
    else:
        where, fix = f"in {spec.source}", f"change it in {spec.source} and apply that file again"
    message = (
        f"Reload of {name!r} refused: the configuration stored for it earlier ({values}, set "
        f"{where}) does not fit the new {getattr(model, '__name__', 'config model')} "
        f"({reasons}). The new definition itself is fine: {fix}, then run the definition "
        f"again. The running versions are unchanged."
    )
    return ReloadError(name, "config", message, cause=exc)


async def transaction(book: Book, pool: LivePool, runner: Runner, change: Change) -> Transaction:
    """The transaction making ``change`` (the operation lock held; a ``define_file`` change
    is imported by the Kernel first, as a ``define``)."""
    if change.kind == "reload":
        return reload(book, pool, runner, change)
    if change.kind == "configure":
        entry = book.registry[change.plugin]
        config, marked = split_marked(dict(change.values))  # `{value: ..., secret: true}` too
        spec = replace(
            entry.spec,
            config={**entry.spec.config, **config},
            secrets=entry.spec.secrets | marked,
            source="configure()",
            line=None,
            lines={},  # the file's line numbers do not describe these values
        )
        book.learn(spec, entry.cls)  # before validating: its errors may quote them
        return reconfigure(book, pool, runner, spec)
    if change.kind == "apply_config":  # read and parsed in a worker thread
        return await asyncio.to_thread(apply_config, book, pool, runner, change)
    if change.kind == "define":
        return define(book, pool, runner, change)
    raise ValueError(f"Kernel.apply() cannot make a {change.kind} change here.")
