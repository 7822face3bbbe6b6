"""Hot reload as a transaction: plan everything, start the new set aside, swap once, drain.

1. :func:`plan` validates the proposed registry (new classes, new config, the whole
   graph) and computes the cascade, touching nothing.
2. :func:`execute` starts each new instance in dependency order, bound to the new
   instances of its dependencies, with the old one's exported state. ``restart``
   plugins stop their old instance first.
3. One swap of the live generation.
4. The old generation drains (leases held by requests in flight are released) and the
   old instances stop, dependents first, each under the stop timeout.

A failure anywhere before step 3 stops the new instances already started, restarts any
old instance stopped by a ``restart`` plugin, and raises :class:`ReloadError`; the old
set keeps serving. (The course's Go listing stops the old instance *after* starting the
new one and then "rolls back" by stopping the new one, leaving nothing running: not
here.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ..errors import ConfigError, DependencyError, PluginError, RegistryError, ReloadError, describe
from . import _loader
from ._config import PluginSpec
from ._discovery import fingerprint
from ._graph import DependencyGraph
from ._lifecycle import Live, call_phase
from ._plugin import Plugin, PluginState, check_plugin_class
from ._registry import Registry
from ._reports import ReloadReport

__all__ = ["Plan", "execute", "plan", "reconfigure"]


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
                phase = "config" if isinstance(exc, ConfigError) else "validate"
                raise _refuse(name, exc, phase) from None
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
        for dep, _ in registry[name].requires:
            if dep not in available:
                raise _refuse(
                    name,
                    DependencyError(
                        f"Plugin {name!r} needs {dep!r}, which is not running.",
                        plugins=(name, dep),
                    ),
                )
    return Plan(names, registry, graph, order, load)


async def execute(kernel, plan: Plan) -> ReloadReport:
    """Carry out a plan (the kernel's operation lock held); see the module docstring."""
    t0 = time.perf_counter()
    pool = kernel._pool
    old_gen = pool.current
    current: Mapping[str, Live] = old_gen.live
    report = ReloadReport(targets=list(plan.targets), order=list(plan.order))
    for name in plan.order + plan.load:
        old = current[name].version if name in current else "-"
        report.versions[name] = (old, str(plan.registry[name].cls.version))
    for name in plan.order:
        detail = "target" if name in plan.targets else f"cascade from {', '.join(plan.targets)}"
        kernel._emit("reloading", name, detail=detail, version=current[name].version)

    new: dict[str, Live] = {}
    stopped_first: list[str] = []
    try:
        for name in plan.order:
            entry = plan.registry[name]
            old = current[name]
            restart = "restart" in (entry.cls.reload_strategy, type(old.plugin).reload_strategy)
            if restart:
                report.strategy[name] = "restart"
            state = await call_phase(old, "export_state", timeout=kernel.timeouts.export_state)
            if restart:
                error = await _loader.stop_instance(kernel, old, set_state=False)
                if error is not None:
                    raise error
                stopped_first.append(name)
            new[name] = await _loader.start_instance(
                kernel, entry, current, bound=new, state=state, handover=True
            )
            report.started.append(name)
        t_started = time.perf_counter()
        generation = pool.build({**current, **new}, plan.graph)
        # a canary may refuse the new set: it sees the entries of the plugins replaced
        await pool.verify(generation, {n: plan.registry[n] for n in plan.order})
    except Exception as exc:
        error = exc if isinstance(exc, PluginError) else PluginError("gateway", "swap", cause=exc)
        await _rollback(kernel, new, stopped_first, current)
        report.rolled_back = True
        _record_failure(kernel, report, error)
        report.timings["total"] = time.perf_counter() - t0
        kernel._emit(
            "reload_failed",
            error.plugin,
            detail=f"in {error.phase}",
            error=report.error,
            version=error.version or "",
        )
        for name in plan.order:
            kernel._emit("rolled_back", name, version=current[name].version)
        raise ReloadError(
            error.plugin,
            error.phase,
            f"Reload of {', '.join(plan.targets)} rolled back: plugin {error.plugin!r} failed "
            f"in {error.phase}: {report.error}. The old versions keep serving.",
            cause=error.cause,
            version=error.version,
            report=report,
        ) from error.cause

    # -- the swap: one reference --------------------------------------------------------
    kernel._registry = plan.registry
    pool.swap(generation)
    _rebind(generation.live, new)
    t_swapped = time.perf_counter()
    for name in plan.order:
        kernel._reloads[name] = kernel._reloads.get(name, 0) + 1
        kernel._errors.pop(name, None)
        kernel._health.pop(name, None)  # a new instance: not checked yet
        kernel._states[name] = PluginState.ACTIVE
        old, new_version = report.versions[name]
        detail = f"{old} -> {new_version}" if old != new_version else f"{old} (new instance)"
        kernel._emit("reloaded", name, detail=detail, version=new_version)

    # -- drain, then stop the old instances, dependents first -----------------------------
    if not await pool.drain(old_gen, kernel.timeouts.drain):
        kernel._emit(
            "stopping",
            ", ".join(plan.targets),
            detail=f"drain timed out after {kernel.timeouts.drain:g}s; stopping old instances",
        )
    t_drained = time.perf_counter()
    for name in reversed(plan.order):
        if name not in stopped_first:
            await _loader.stop_instance(kernel, current[name], set_state=False)
        report.stopped.append(name)
    t_stopped = time.perf_counter()

    if plan.load:
        await _load_new(kernel, plan.load, plan.targets, report)
    kernel.last_cascade = tuple(plan.order + report.loaded)
    report.timings.update(
        start=t_started - t0,
        swap=t_swapped - t_started,
        drain=t_drained - t_swapped,
        stop=t_stopped - t_drained,
        total=time.perf_counter() - t0,
    )
    return report


def _rebind(live: Mapping[str, Live], new: Mapping[str, Live]) -> None:
    """Point the contexts of running plugins outside the cascade at the new instances.

    Only a reload without cascade leaves such dependents; what they stored from
    ``ctx.get`` earlier still refers to the old instance.
    """
    for name, entry in live.items():
        if name not in new:
            for dep in entry.ctx._deps.keys() & new.keys():
                entry.ctx._deps[dep] = new[dep].plugin


async def _load_new(kernel, names: list[str], targets: list[str], report: ReloadReport) -> None:
    """Load plugins that were not running; raise ReloadError if one of ``targets`` failed."""
    loaded = await _loader.load(kernel, names)
    report.loaded.extend(n for n in loaded.order if n not in report.loaded)
    failed = [n for n in targets if n in loaded.failed]
    if failed:
        error = loaded.failed[failed[0]]
        _record_failure(kernel, report, error)
        raise ReloadError(
            error.plugin,
            error.phase,
            f"Plugin {error.plugin!r} {error.version} was registered but failed in "
            f"{error.phase}: {report.error}",
            cause=error.cause,
            version=error.version,
            report=report,
        ) from error.cause


def _record_failure(kernel, report: ReloadReport, error: PluginError) -> None:
    """Put what failed, where, and why (secrets masked) into the report."""
    cause = describe(error.cause) if error.cause is not None else str(error)
    report.error = kernel._redact(cause)
    report.phase, report.plugin = error.phase, error.plugin


async def _rollback(
    kernel, new: Mapping[str, Live], stopped_first: list[str], current: Mapping[str, Live]
) -> None:
    """Stop the new instances (dependents first) and restart what ``restart`` plugins stopped."""
    for name in reversed(list(new)):
        await _loader.stop_instance(kernel, new[name], set_state=False)
    for name in reversed(stopped_first):
        old = current[name]
        try:
            await call_phase(old, "start", old.ctx, timeout=kernel.timeouts.start)
        except PluginError as exc:
            # neither version runs: out of service, with everything that needs it
            _loader.fail(kernel, name, exc)
            await _loader.unload(kernel, name, dead=True)


async def reconfigure(kernel, spec: PluginSpec) -> ReloadReport | None:
    """Validate ``spec`` for its plugin, then reload the plugin (if running) with dependents."""
    registry = kernel._registry.with_spec(spec)
    if spec.name not in kernel._pool.current.live:
        kernel._registry = registry
        kernel._emit("configured", spec.name, detail=f"from {spec.source}")
        return None
    report = await execute(kernel, plan(kernel, [spec.name], registry=registry))
    kernel._emit("configured", spec.name, detail=f"from {spec.source}")
    return report


async def define(
    kernel,
    classes: list[type[Plugin]],
    source: str,
    origin: str,
    unit: str | None,
    fingerprints: Mapping[str, str],
) -> ReloadReport:
    """Register new classes and reload changed ones (see ``Kernel.define``)."""
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
    prints = {cls.name: fingerprints.get(cls.name) or fingerprint(cls) for cls in classes}
    new, changed = [], []
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
            try:
                registry = registry.with_class(cls, source=source, fingerprint=prints[cls.name])
            except (ConfigError, RegistryError) as exc:
                phase = "config" if isinstance(exc, ConfigError) else "validate"
                raise _refuse(cls.name, exc, phase) from None
            registry = registry.with_entry(replace(registry[cls.name], unit=unit, origin=origin))
    try:
        registry.graph().validate()
    except DependencyError as exc:
        what = "Reload" if changed else "Definition"
        raise _refuse((changed or new)[0], exc, what=what) from None

    for name in new:
        kernel._pending.pop(name, None)
    if changed:
        report = await execute(kernel, plan(kernel, changed, registry=registry))
    else:
        kernel._registry = registry
        report = ReloadReport()
    for name in new:
        kernel._states[name] = PluginState.REGISTERED
        kernel._reloads.setdefault(name, 0)
        kernel._emit("registered", name, detail=f"{registry[name].cls.kind} from {source}")
    if new:
        for name in new:
            report.versions.setdefault(name, ("-", str(registry[name].cls.version)))
        await _load_new(kernel, new, new, report)
        kernel.last_cascade = tuple(report.order + report.loaded)
    return report


def run_plan(kernel, targets: list, registry: Registry | None = None, cascade: bool = True):
    """Plan and execute (the operation lock held by the caller)."""
    return execute(kernel, plan(kernel, targets, cascade=cascade, registry=registry))
