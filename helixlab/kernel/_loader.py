"""The loader (the course's PluginLoader): start and stop instances, load and unload plugins.

Functions over a kernel, called with its operation lock held. Starting an instance
binds its context to its dependencies' instances; stopping one never raises (a failure
is reported and returned) because what comes after a stop must go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..errors import ConfigError, DependencyError, PluginError, PluginTimeoutError, describe
from ._lifecycle import Job, Live, fresh_copy, home, overridden, widest
from ._plugin import Context, PluginState
from ._registry import Entry
from ._reports import LoadReport

__all__ = [
    "commit",
    "fail",
    "load",
    "start_instance",
    "start_steps",
    "stop_all",
    "stop_instance",
    "stop_many",
    "unload",
]


def start_steps(
    kernel: Any,
    entry: Entry,
    current: Mapping[str, Live],
    bound: Mapping[str, Live],
    made: dict[str, Live],
    old: Live | None = None,
) -> Job:
    """The job that replaces ``old`` by a new instance of ``entry`` (see ``_lifecycle``).

    The old instance's exported state (a copy) is imported after ``init``; dependencies
    are bound from ``bound`` (the reload's new instances) before ``current``. The instance
    is put in ``made`` before its first phase, so that a caller can unbind it on failure.
    """
    timeouts = kernel.timeouts
    state = None
    if old is not None and "export_state" in overridden(type(old.plugin)):
        state = fresh_copy((yield (old, "export_state", (), timeouts.export_state)))
    live = _new_live(kernel, entry, current, bound, handover=True)
    made[entry.name] = live
    ctx = live.ctx
    phases = overridden(entry.cls)  # a phase the class does not define costs nothing
    if "init" in phases:
        yield (live, "init", (ctx, live.config), timeouts.init)
    if state is not None and "import_state" in phases:
        yield (live, "import_state", (state,), timeouts.import_state)
    if "start" in phases:
        yield (live, "start", (ctx,), timeouts.start)
    return live


def _drop_instance(kernel: Any, entry: Entry) -> None:
    """The instance given to ``register()`` hung in a phase and may still be in it: a
    later load makes a new one from its class instead of starting it a second time."""
    if kernel._registry.entries.get(entry.name) is entry:
        kernel._registry = kernel._registry.with_entry(replace(entry, instance=None))


def _new_live(
    kernel: Any,
    entry: Entry,
    current: Mapping[str, Live],
    bound: Mapping[str, Live],
    handover: bool,
) -> Live:
    """A new instance of ``entry`` with its own copy of the config, bound to its dependencies."""
    name = entry.name
    deps = {d: (bound.get(d) or current[d]).plugin for d, _ in entry.requires}
    try:
        plugin = entry.instance if entry.instance is not None and not handover else entry.cls()
    except Exception as exc:
        raise PluginError(name, "init", cause=exc, version=str(entry.cls.version)) from exc
    config = fresh_copy(entry.config)  # an instance that changes its config changes only its own
    ctx = Context(name, str(entry.cls.version), config, deps, kernel=kernel)
    return Live(plugin, ctx, config)


async def start_instance(
    kernel: Any,
    entry: Entry,
    current: Mapping[str, Live],
    *,
    bound: Mapping[str, Live] | None = None,
    state: Any = None,
    handover: bool = False,
) -> Live:
    """Create, init, (import state into) and start an instance of ``entry``.

    Dependencies are bound from ``bound`` (a reload's new instances) before ``current``.
    With ``handover`` a reload owns the instance: no state changes or events here, and
    ``state`` is imported. On failure the PluginError propagates; a plugin not owned by a
    reload is marked failed. ``stop`` is not called for an instance whose start failed.
    """
    name = entry.name
    call = kernel._runner.call
    timeouts = kernel.timeouts
    try:
        live = _new_live(kernel, entry, current, bound or {}, handover)
    except PluginError as exc:
        if not handover:
            fail(kernel, name, exc)
        raise
    ctx = live.ctx
    try:
        await call(live, "init", ctx, live.config, timeout=timeouts.init)
        if not handover:
            kernel._states[name] = PluginState.INITIALIZED
            kernel._emit("initialized", name)
        if handover and state is not None:
            await call(live, "import_state", fresh_copy(state), timeout=timeouts.import_state)
        await call(live, "start", ctx, timeout=timeouts.start)
    except PluginError as exc:
        ctx._deps.clear()  # a failed instance must not keep its dependencies alive
        if isinstance(exc, PluginTimeoutError) and live.plugin is entry.instance:
            _drop_instance(kernel, entry)
        if not handover:
            fail(kernel, name, exc)
        raise
    if not handover:
        kernel._states[name] = PluginState.ACTIVE
        kernel._errors.pop(name, None)
        kernel._health.pop(name, None)  # a new instance: not checked yet
        kernel._emit("started", name)
    return live


async def stop_instance(kernel: Any, live: Live, *, set_state: bool = True) -> PluginError | None:
    """Stop one instance under the stop timeout; an error is reported and returned."""
    name = live.name
    live.stopping = True
    if set_state:
        kernel._states[name] = PluginState.STOPPING
        kernel._emit("stopping", name, version=live.version)
    error = None
    try:
        await kernel._runner.call(live, "stop", live.ctx, timeout=kernel.timeouts.stop)
    except PluginError as exc:
        kernel._emit("failed", name, detail="in stop", error=describe(exc), version=live.version)
        error = exc
    if set_state:  # stopped either way: the instance is out of service
        kernel._states[name] = PluginState.STOPPED
        kernel._emit("stopped", name, version=live.version)
    return error


def stop_abandoned(kernel: Any, live: Live) -> None:
    """On the loop: stop an instance whose ``start`` was abandoned at its timeout and then
    returned. It never served (a failed start is never retried on the same instance: see
    ``_drop_instance``); a failure of its stop is reported as any stop's is."""

    async def stop() -> None:
        await stop_instance(kernel, live, set_state=False)
        _stopped_abandoned(kernel, live)

    kernel._keep(asyncio.ensure_future(stop()))


def stop_abandoned_here(kernel: Any, live: Live) -> None:
    """:func:`stop_abandoned` in the calling worker thread, once the kernel is closing."""
    error = kernel._runner.stop_here(live)
    if error is not None:
        kernel._emit(
            "failed", live.name, detail="in stop", error=describe(error), version=live.version
        )
    _stopped_abandoned(kernel, live)


def _stopped_abandoned(kernel: Any, live: Live) -> None:
    kernel._emit(
        "stopped",
        live.name,
        detail="an abandoned instance (it finished starting after its timeout or an interrupt): "
        "stopped, it never served",
        version=live.version,
    )


async def stop_many(kernel: Any, lives: list[Live]) -> None:
    """Stop instances in this order, as one job; a failure is reported and the rest go on."""
    todo = list(lives)
    timeout = kernel.timeouts.stop
    while todo:
        where = widest(*(home(type(v.plugin), ("stop",)) for v in todo))
        done = [0]

        def job(todo: list[Live] = todo, done: list[int] = done) -> Job:
            for live in todo:
                if "stop" in overridden(type(live.plugin)):
                    yield (live, "stop", (live.ctx,), timeout)
                done[0] += 1

        try:
            await kernel._runner.run(job(), where)
            return
        except PluginError as exc:
            failed = todo[done[0]]
            kernel._emit(
                "failed", failed.name, detail="in stop", error=describe(exc), version=failed.version
            )
            todo = todo[done[0] + 1 :]


def fail(kernel: Any, name: str, exc: PluginError) -> None:
    kernel._states[name] = PluginState.FAILED
    kernel._errors[name] = kernel._redact(
        f"{exc.phase}: {describe(exc.cause) if exc.cause else exc}"
    )
    kernel._emit("failed", name, detail=f"in {exc.phase}", error=kernel._errors[name])


def commit(kernel: Any, live: Mapping[str, Live], *, failing: str | None = None) -> None:
    """Build the next generation (builders included) and swap it in."""
    pool = kernel._pool
    try:
        new = pool.build(live, kernel._registry.graph())
    except PluginError:
        raise  # a builder naming the plugin and phase it refused
    except Exception as exc:
        raise PluginError(failing or "kernel", "swap", cause=exc) from exc
    pool.swap(new)


async def load(kernel: Any, names: Iterable[str] | None) -> LoadReport:
    """Start the named plugins (all, for None) and what they need, in dependency order."""
    return await load_these(kernel, to_load(kernel, names))


def to_load(kernel: Any, names: Iterable[str] | None) -> list[str]:
    """What ``load(names)`` starts, in order: the named plugins and what they need, not
    already running."""
    registry = kernel._registry
    graph = registry.graph()
    graph.validate()
    if names is None:
        wanted = graph.load_order()
    else:
        wanted_set: set[str] = set()
        for name in names:
            registry[name]
            if not graph.nodes[name].enabled:
                raise DependencyError(
                    f"Plugin {name!r} is disabled in the configuration; enable it to load it.",
                    plugins=(name,),
                )
            wanted_set |= {name, *graph.dependencies(name, transitive=True)}
        wanted = [n for n in graph.load_order() if n in wanted_set]
    live = kernel._pool.current.live
    return [n for n in wanted if n not in live]


async def load_these(kernel: Any, wanted: list[str]) -> LoadReport:
    """Start ``wanted`` (from :func:`to_load`) in this order.

    A plugin that fails is marked failed, the plugins that need it are skipped with the
    reason, and the others go on loading.
    """
    registry = kernel._registry
    report = LoadReport()
    pool = kernel._pool
    for name in wanted:
        op = kernel._op
        if op is not None and op.interrupted:  # what started is up; the rest is not begun
            report.skipped[name] = "the load was interrupted before it"
            kernel._emit("skipped", name, detail=report.skipped[name])
            continue
        entry = registry[name]
        down = [d for d, _ in entry.requires if d not in pool.current.live]
        if down:
            failed = kernel._states.get(down[0]) == PluginState.FAILED
            report.skipped[name] = (
                f"needs {down[0]!r}, which {'failed' if failed else 'is not running'}"
            )
            kernel._emit("skipped", name, detail=report.skipped[name])
            continue
        try:
            entry.check_loadable()  # required settings: validated again at load
            live = await start_instance(kernel, entry, pool.current.live)
        except ConfigError as exc:
            error = PluginError(name, "config", str(exc), cause=exc)
            fail(kernel, name, error)
            _record(kernel, report, name, error)
            continue
        except PluginError as exc:
            _record(kernel, report, name, exc)
            continue
        try:
            commit(kernel, {**pool.current.live, name: live}, failing=name)
        except PluginError as exc:  # a builder (the gateway) refused the new instance
            await stop_instance(kernel, live)
            fail(kernel, name, exc)
            _record(kernel, report, name, exc)
            continue
        report.order.append(name)
    return report


def _record(kernel: Any, report: LoadReport, name: str, exc: PluginError) -> None:
    report.failed[name] = exc
    report.reasons[name] = kernel._redact(describe(exc.cause) if exc.cause else str(exc))


async def unload(kernel: Any, name: str, *, dead: bool = False) -> list[str]:
    """Stop ``name`` and, first, every running plugin that depends on it; returns that order.

    ``dead``: ``name`` already stopped and failed (a restart that could not be undone); it
    and its dependents are only taken out of service, and it keeps its failed state.
    """
    current = kernel._pool.current.live
    order = [n for n in reversed(kernel._registry.graph().reload_order(name)) if n in current]
    to_stop = [n for n in order if not (dead and n == name)]
    await _retire(kernel, current, to_stop, {n: v for n, v in current.items() if n not in order})
    for n in to_stop:
        kernel._emit("unloaded", n)
    return order


async def stop_all(kernel: Any) -> list[str]:
    """Stop every running plugin, dependents first (even with a cycle among the unloaded)."""
    current = kernel._pool.current.live
    start_order, _ = kernel._registry.graph().display_order()  # never raises
    order = [n for n in reversed(start_order) if n in current]
    await _retire(kernel, current, order, {})
    return order


async def _retire(
    kernel: Any, current: Mapping[str, Live], order: list[str], remaining: dict[str, Live]
) -> None:
    """Swap in ``remaining``, let work on the older generations drain, stop ``order``."""
    commit(kernel, remaining)
    await kernel._pool.drain(kernel._pool.current, kernel.timeouts.drain)
    for name in order:
        await stop_instance(kernel, current[name])
