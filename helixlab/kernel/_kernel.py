"""The Kernel: one object owning the registry, the graph, the live instances and the events.

Public methods are synchronous so that a notebook cell calls them directly; each one that
does lifecycle work has an ``a``-prefixed async twin. The work itself runs on the
kernel's own loop (see ``_loop``), one lifecycle operation at a time; reads never block.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import (
    ConfigError,
    ConfigProblem,
    DependencyError,
    KernelClosedError,
    PluginError,
    PluginNotFoundError,
    RegistryError,
    describe,
)
from . import _discovery, _reload
from ._config import PluginSpec, parse_config, redact
from ._events import EventLog, PluginEvent
from ._graph import DependencyGraph
from ._lifecycle import Live, Timeouts, call_phase
from ._live import Lease, LivePool
from ._loop import LoopThread
from ._plugin import Context, Plugin, PluginState
from ._registry import Entry, Registry
from ._reports import HealthStatus, LoadReport, PluginInfo, ReloadReport

__all__ = ["Kernel"]

ReloadTarget = str | type[Plugin]


class Kernel:
    """A plugin kernel: register plugins, load them in dependency order, hot reload them.

    >>> import helixlab as hx
    >>> class Hello(hx.Plugin):
    ...     name = "hello"
    >>> with hx.Kernel() as k:
    ...     k.register(Hello)
    ...     k.load_all()
    'hello'
    loaded 1: hello
    """

    def __init__(self, *, timeouts: Timeouts | None = None, event_log_size: int = 1000):
        self.timeouts = timeouts or Timeouts()
        self._thread = LoopThread()
        self._events = EventLog(event_log_size)
        self._pool = LivePool(self._thread.loop)
        self._registry = Registry()
        self._states: dict[str, PluginState] = {}
        self._errors: dict[str, str] = {}
        self._reloads: dict[str, int] = {}
        self._health: dict[str, HealthStatus] = {}
        self._pending: dict[str, PluginSpec] = {}
        self._op_lock = asyncio.Lock()
        self._closers: list[Callable[[], Any]] = []
        self.last_cascade: tuple[str, ...] = ()
        self._closed = False

    @classmethod
    def from_config(cls, data: str | os.PathLike | Mapping, **kwargs: Any) -> Kernel:
        """A kernel with this configuration applied (built-in plugins it names registered)."""
        kernel = cls(**kwargs)
        try:
            kernel.apply_config(data)
        except BaseException:
            kernel.close()
            raise
        return kernel

    # -- running work on the kernel loop --------------------------------------------

    def _run(self, coro: Any) -> Any:
        if self._closed:
            coro.close()
            raise KernelClosedError("The kernel is closed; create a new Kernel().")
        return self._thread.run(coro)

    async def _arun(self, coro: Any) -> Any:
        if self._closed:
            coro.close()
            raise KernelClosedError("The kernel is closed; create a new Kernel().")
        return await self._thread.arun(coro)

    def _emit(
        self, kind: str, name: str, detail: str = "", error: str | None = None, version: str = ""
    ) -> PluginEvent:
        if not version and name in self._registry:
            version = str(self._registry[name].cls.version)
        return self._events.emit(kind, name, version, detail, error)

    def _set_state(self, name: str, state: PluginState) -> None:
        self._states[name] = state

    # -- registry ---------------------------------------------------------------------

    def register(
        self, plugin: type[Plugin] | Plugin, *, origin: str = "code", source: str | None = None
    ) -> str:
        """Add a plugin class (or instance) under its ``name``; returns the name."""
        return self._run(self._aregister(plugin, origin=origin, source=source))

    async def aregister(
        self, plugin: type[Plugin] | Plugin, *, origin: str = "code", source: str | None = None
    ) -> str:
        return await self._arun(self._aregister(plugin, origin=origin, source=source))

    async def _aregister(self, plugin: Any, *, origin: str, source: str | None) -> str:
        async with self._op_lock:
            return self._register_now(plugin, origin=origin, source=source)

    def _register_now(
        self, plugin: Any, *, origin: str, source: str | None, **match: str | None
    ) -> str:
        """Register (lock held); ``unit=``, ``fingerprint=`` match later definitions to it."""
        cls = type(plugin) if isinstance(plugin, Plugin) else plugin
        name = getattr(cls, "name", None)
        spec = self._pending.get(name) if isinstance(name, str) else None
        self._registry = self._registry.added(
            plugin, origin=origin, source=source, spec=spec, **match
        )
        self._pending.pop(name, None)
        self._set_state(name, PluginState.REGISTERED)
        self._reloads.setdefault(name, 0)
        self._emit("registered", name, detail=f"{cls.kind} from {origin}")
        return name

    def unregister(self, name: str) -> None:
        """Forget a plugin (unloading it first); refused while other plugins depend on it."""
        self._run(self._aunregister(name))

    async def aunregister(self, name: str) -> None:
        await self._arun(self._aunregister(name))

    async def _aunregister(self, name: str) -> None:
        async with self._op_lock:
            self._registry[name]
            users = self._registry.graph().dependents(name)
            if users:
                raise RegistryError(
                    f"Cannot unregister {name!r}: {', '.join(users)} depend(s) on it; "
                    f"unregister those first."
                )
            if name in self._pool.current.live:
                await self._unload_now(name)
            self._registry = self._registry.without(name)
            for table in (self._states, self._errors, self._reloads, self._health):
                table.pop(name, None)
            self._emit("unregistered", name)

    def discover(self, path: str | os.PathLike) -> list[str]:
        """Register every plugin found in a plugins directory; returns their names."""
        return self._run(self._adiscover(Path(path)))

    async def adiscover(self, path: str | os.PathLike) -> list[str]:
        return await self._arun(self._adiscover(Path(path)))

    async def _adiscover(self, path: Path) -> list[str]:
        units = _discovery.plugin_units(path)
        loaded = []
        for unit in units:
            digest = await asyncio.to_thread(unit.digest)
            loaded.append((unit, digest, await asyncio.to_thread(_discovery.import_unit, unit)))
        async with self._op_lock:
            names = []
            for unit, digest, classes in loaded:
                for cls in classes:
                    if cls.name not in self._registry:
                        # unit and content recorded: the file watcher then refuses a rename
                        # and takes a save of unchanged content as no change
                        name = self._register_now(
                            cls,
                            origin="file",
                            source=str(unit.path),
                            unit=str(unit.root),
                            fingerprint=unit.fingerprint(digest, cls.name),
                        )
                        names.append(name)
            return names

    def discover_entry_points(self, group: str = "helixlab.plugins") -> list[str]:
        """Register plugins that installed packages publish in the entry-point ``group``."""
        return self._run(self._adiscover_entry_points(group))

    async def _adiscover_entry_points(self, group: str) -> list[str]:
        found = _discovery.entry_point_plugins(group)
        async with self._op_lock:
            return [
                self._register_now(cls, origin="entry-point", source=source)
                for source, cls in found
                if cls.name not in self._registry
            ]

    # -- configuration ----------------------------------------------------------------

    def apply_config(
        self,
        data: str | os.PathLike | Mapping,
        *,
        source: str | None = None,
        line_offset: int = 0,
    ) -> list[ReloadReport]:
        """Apply a YAML configuration (path, text or mapping) in the course's format.

        Every problem is reported at once, before anything changes. Plugins that are
        running and whose configuration changed are reloaded with their dependents.
        """
        return self._run(self._aapply_config(data, source=source, line_offset=line_offset))

    async def aapply_config(
        self, data: Any, *, source: str | None = None, line_offset: int = 0
    ) -> list[ReloadReport]:
        return await self._arun(self._aapply_config(data, source=source, line_offset=line_offset))

    async def _aapply_config(
        self, data: Any, *, source: str | None, line_offset: int
    ) -> list[ReloadReport]:
        doc = await asyncio.to_thread(parse_config, data, source=source, line_offset=line_offset)
        async with self._op_lock:
            registry, problems = self._registry, []
            for name, spec in doc.plugins.items():
                try:
                    if name not in registry:
                        builtin = _discovery.builtin_plugin(name)
                        if builtin is None:
                            known = sorted({*registry, *_discovery.builtin_names()})
                            raise ConfigError(
                                [
                                    ConfigProblem(
                                        f"no plugin named {name!r} is registered or built in "
                                        f"(known: {', '.join(known) or 'none'})",
                                        doc.source,
                                        spec.line,
                                        name,
                                    )
                                ]
                            )
                        registry = registry.added(builtin, origin="builtin", spec=spec)
                    else:
                        registry = registry.with_spec(spec)
                except ConfigError as exc:
                    problems.extend(exc.problems)
            if problems:
                raise ConfigError(problems, doc.source)
            changed = [
                n
                for n in doc.plugins
                if n in self._registry and self._registry[n].spec != registry[n].spec
            ]
            added = [n for n in registry if n not in self._registry]
            running = [n for n in changed if n in self._pool.current.live]
            reports = []
            if running:
                reports.append(await _reload.run_plan(self, running, registry=registry))
            else:
                self._registry = registry
            for name in added:
                self._set_state(name, PluginState.REGISTERED)
                self._reloads.setdefault(name, 0)
                self._emit("registered", name, detail="built in, from config")
            for name in changed:
                self._emit("configured", name, detail=f"from {doc.source}")
            return reports

    def configure(self, name: str, config: Mapping[str, Any]) -> ReloadReport | None:
        """Validate a new config for ``name``, then reload it with its dependents (if running)."""
        return self._run(self._aconfigure(name, dict(config)))

    async def aconfigure(self, name: str, config: Mapping[str, Any]) -> ReloadReport | None:
        return await self._arun(self._aconfigure(name, dict(config)))

    async def _aconfigure(self, name: str, config: dict[str, Any]) -> ReloadReport | None:
        async with self._op_lock:
            entry = self._registry[name]
            spec = PluginSpec(
                name=name,
                enabled=entry.spec.enabled,
                priority=entry.spec.priority,
                depends_on=entry.spec.depends_on,
                config={**entry.spec.config, **config},
                source="configure()",
            )
            return await _reload.reconfigure(self, spec)

    # -- lifecycle --------------------------------------------------------------------

    def load_all(self) -> LoadReport:
        """Init and start every enabled plugin in dependency order.

        A plugin that fails is marked failed; plugins that need it are skipped (the report
        says why); the others keep loading.
        """
        return self._run(self._aload(None))

    async def aload_all(self) -> LoadReport:
        return await self._arun(self._aload(None))

    def load(self, name: str) -> LoadReport:
        """Load one plugin, and first whichever of its dependencies are not running."""
        return self._run(self._aload([name]))

    async def aload(self, name: str) -> LoadReport:
        return await self._arun(self._aload([name]))

    async def _aload(self, names: list[str] | None) -> LoadReport:
        async with self._op_lock:
            return await self._load_now(names)

    async def _load_now(self, names: Iterable[str] | None) -> LoadReport:
        graph = self._registry.graph()
        graph.validate()
        if names is None:
            wanted = graph.load_order()
        else:
            wanted_set: set[str] = set()
            for name in names:
                self._registry[name]
                if not graph.nodes[name].enabled:
                    raise DependencyError(
                        f"Plugin {name!r} is disabled in the configuration; enable it to load it.",
                        plugins=(name,),
                    )
                wanted_set |= {name, *graph.dependencies(name, transitive=True)}
            wanted = [n for n in graph.load_order() if n in wanted_set]
        report = LoadReport()
        for name in wanted:
            if name in self._pool.current.live:
                continue
            entry = self._registry[name]
            down = [d for d, _ in entry.requires if d not in self._pool.current.live]
            if down:
                dep = down[0]
                why = "failed" if self._states.get(dep) == PluginState.FAILED else "is not running"
                report.skipped[name] = f"needs {dep!r}, which {why}"
                self._emit("skipped", name, detail=report.skipped[name])
                continue
            try:
                live = await self.start_instance(entry, self._pool.current.live)
                self._commit({**self._pool.current.live, name: live}, failing=name)
            except PluginError as exc:
                report.failed[name] = exc
                continue
            report.order.append(name)
        return report

    async def start_instance(
        self,
        entry: Entry,
        current: Mapping[str, Live],
        *,
        bound: Mapping[str, Live] | None = None,
        state: Any = None,
        handover: bool = False,
    ) -> Live:
        """Create, init, (import state into) and start an instance of ``entry``.

        Dependencies are bound from ``bound`` (a reload's new instances) before ``current``.
        On failure the instance is left stopped, the plugin marked failed unless a reload
        owns it (``handover``), and the PluginError raised.
        """
        name = entry.name
        bound = bound or {}
        deps = {d: (bound.get(d) or current[d]).plugin for d, _ in entry.requires}
        plugin = entry.instance if entry.instance is not None and not handover else entry.cls()
        ctx = Context(name, str(entry.cls.version), entry.config, deps, kernel=self)
        live = Live(plugin, ctx, entry.config, dict(entry.requires))
        started = False
        try:
            await call_phase(live, "init", ctx, entry.config, timeout=self.timeouts.init)
            if not handover:
                self._set_state(name, PluginState.INITIALIZED)
                self._emit("initialized", name)
            if handover and state is not None:
                await call_phase(live, "import_state", state, timeout=self.timeouts.import_state)
            await call_phase(live, "start", ctx, timeout=self.timeouts.start)
            started = True
        except PluginError as exc:
            if not handover:
                self._fail(name, exc)
            raise
        finally:
            if not started:
                ctx._deps.clear()
        if not handover:
            self._set_state(name, PluginState.ACTIVE)
            self._errors.pop(name, None)
            self._emit("started", name)
        return live

    def _fail(self, name: str, exc: PluginError) -> None:
        self._set_state(name, PluginState.FAILED)
        self._errors[name] = f"{exc.phase}: {describe(exc.cause) if exc.cause else exc}"
        self._emit("failed", name, detail=f"in {exc.phase}", error=self._errors[name])

    async def stop_instance(self, live: Live, *, set_state: bool = True) -> PluginError | None:
        """Stop one instance under the stop timeout; an error is reported, returned, not raised."""
        name = live.name
        if set_state:
            self._set_state(name, PluginState.STOPPING)
            self._emit("stopping", name, version=live.version)
        error = None
        try:
            await call_phase(live, "stop", live.ctx, timeout=self.timeouts.stop)
        except PluginError as exc:
            self._emit("failed", name, detail="in stop", error=describe(exc), version=live.version)
            error = exc
        finally:
            if set_state:
                self._set_state(name, PluginState.STOPPED)
        if set_state:  # stopped either way: the instance is out of service
            self._emit("stopped", name, version=live.version)
        return error

    def _commit(self, live: Mapping[str, Live], *, failing: str | None = None) -> None:
        """Build the next generation (builders included) and swap it in."""
        try:
            new = self._pool.build(live)
        except Exception as exc:
            name = failing or "kernel"
            raise PluginError(name, "swap", cause=exc) from exc
        self._pool.swap(new)

    def unload(self, name: str) -> list[str]:
        """Stop ``name`` and, first, every running plugin that depends on it; returns that order."""
        return self._run(self._aunload(name))

    async def aunload(self, name: str) -> list[str]:
        return await self._arun(self._aunload(name))

    async def _aunload(self, name: str) -> list[str]:
        async with self._op_lock:
            self._registry[name]
            return await self._unload_now(name)

    async def _unload_now(self, name: str) -> list[str]:
        graph = self._registry.graph()
        current = self._pool.current.live
        order = [n for n in reversed(graph.reload_order(name)) if n in current]
        remaining = {n: v for n, v in current.items() if n not in order}
        self._commit(remaining)
        old = self._pool.current  # already swapped: drain everything older
        await self._pool.drain(old, self.timeouts.drain)
        for n in order:
            await self.stop_instance(current[n])
            self._emit("unloaded", n)
        return order

    def reload(self, *targets: ReloadTarget, cascade: bool = True) -> ReloadReport:
        """Hot reload plugins (by name, or with a redefined class) with all their dependents.

        New instances are started aside, bound to each other, with state handed over; then
        one swap; then the old ones drain and stop, dependents first. If anything fails
        before the swap, the new instances are stopped, the old keep serving, and
        :class:`~helixlab.ReloadError` names the plugin and the phase.
        """
        return self._run(self._areload(list(targets), cascade))

    async def areload(self, *targets: ReloadTarget, cascade: bool = True) -> ReloadReport:
        return await self._arun(self._areload(list(targets), cascade))

    async def _areload(self, targets: list[ReloadTarget], cascade: bool) -> ReloadReport:
        async with self._op_lock:
            return await _reload.run_plan(self, targets, cascade=cascade)

    def define(
        self,
        classes: Iterable[type[Plugin]],
        *,
        source: str,
        origin: str = "cell",
        unit: str | None = None,
        fingerprints: Mapping[str, str] | None = None,
    ) -> ReloadReport:
        """Bring new code in: register and load new plugins, hot reload changed ones.

        This is what a ``%%helix plugin`` cell and a saved plugin file do. A class whose
        fingerprint (its code) equals the registered one is left alone; a changed one is
        reloaded with its dependents. ``unit`` identifies the cell or file: a unit that no
        longer defines a plugin it defined before (a rename) is refused.
        """
        return self._run(self._adefine(list(classes), source, origin, unit, fingerprints))

    async def adefine(self, classes: Iterable[type[Plugin]], **kwargs: Any) -> ReloadReport:
        return await self._arun(
            self._adefine(
                list(classes),
                kwargs["source"],
                kwargs.get("origin", "cell"),
                kwargs.get("unit"),
                kwargs.get("fingerprints"),
            )
        )

    async def _adefine(
        self,
        classes: list[type[Plugin]],
        source: str,
        origin: str,
        unit: str | None,
        fingerprints: Mapping[str, str] | None,
    ) -> ReloadReport:
        async with self._op_lock:
            return await _reload.define(self, classes, source, origin, unit, fingerprints or {})

    def preview_reload(self, *targets: ReloadTarget, cascade: bool = True) -> list[str]:
        """The plugins a reload would touch, in order, touching nothing."""
        return _reload.plan(self, list(targets), cascade=cascade).order

    def close(self) -> None:
        """Stop everything (dependents first), the watchers and servers, then the loop."""
        if self._closed:
            return
        try:
            self._thread.run(self._aclose())
        finally:
            self._closed = True
            self._thread.stop()

    async def aclose(self) -> None:
        if not self._closed:
            await self._arun(self._aclose())
            self._closed = True
            self._thread.stop()

    async def _aclose(self) -> None:
        for closer in reversed(self._closers):
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                self._emit("failed", "kernel", detail="while closing", error=describe(exc))
        self._closers.clear()
        async with self._op_lock:
            graph = self._registry.graph()
            current = self._pool.current.live
            start_order, _ = graph._display_order()  # never raises, even with a cycle
            order = [n for n in reversed(start_order) if n in current]
            self._commit({})
            await self._pool.drain(self._pool.current, self.timeouts.drain)
            for name in order:
                await self.stop_instance(current[name])

    def add_closer(self, closer: Callable[[], Any]) -> None:
        """Run ``closer`` (plain or async) first when the kernel closes: watchers, servers."""
        self._closers.append(closer)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Kernel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- health -----------------------------------------------------------------------

    def health(self) -> dict[str, HealthStatus]:
        """Run every running plugin's health check concurrently, each under a timeout."""
        return self._run(self._ahealth())

    async def ahealth(self) -> dict[str, HealthStatus]:
        return await self._arun(self._ahealth())

    async def _ahealth(self) -> dict[str, HealthStatus]:
        with self._pool.lease() as lease:
            live = lease.generation.live
            results = await asyncio.gather(*(self._check(v) for v in live.values()))
        statuses = dict(zip(live, results, strict=True))
        for name, state in sorted(self._states.items()):
            if state == PluginState.FAILED:
                statuses[name] = HealthStatus(
                    name, False, self._errors.get(name, "failed"), state.value
                )
        for name, status in statuses.items():
            before = self._health.get(name)
            if before is None or before.healthy != status.healthy:
                mark = "healthy" if status.healthy else "unhealthy"
                self._emit("health_changed", name, detail=mark, error=status.detail or None)
            self._health[name] = status
        return dict(sorted(statuses.items()))

    async def _check(self, live: Live) -> HealthStatus:
        started = time.perf_counter()
        try:
            result = await call_phase(live, "health", live.ctx, timeout=self.timeouts.health)
        except PluginError as exc:
            detail = describe(exc.cause) if exc.cause and exc.phase == "health" else str(exc)
            if isinstance(exc.cause, TimeoutError):
                detail = f"no answer within {self.timeouts.health:g}s"
            return HealthStatus(live.name, False, detail, "active", time.perf_counter() - started)
        healthy = result is not False and not isinstance(result, str)
        detail = result if isinstance(result, str) else ""
        return HealthStatus(live.name, healthy, detail, "active", time.perf_counter() - started)

    # -- reads (never block) ------------------------------------------------------------

    @property
    def graph(self) -> DependencyGraph:
        """The dependency graph of the registered plugins, as it is now."""
        return self._registry.graph()

    @property
    def names(self) -> list[str]:
        return list(self._registry)

    def __contains__(self, name: object) -> bool:
        return name in self._registry

    def get(self, name: str) -> Plugin:
        """The live instance of a running plugin."""
        try:
            return self._pool.current.live[name].plugin
        except KeyError:
            what = "loaded" if name in self._registry else "registered"
            raise PluginNotFoundError(name, self._pool.current.live, what=what) from None

    def plugin_class(self, name: str) -> type[Plugin]:
        return self._registry[name].cls

    def entry(self, name: str) -> Entry:
        return self._registry[name]

    def state(self, name: str) -> PluginState:
        self._registry[name]
        return self._states.get(name, PluginState.REGISTERED)

    def reload_count(self, name: str) -> int:
        return self._reloads.get(name, 0)

    def lease(self) -> Lease:
        """Hold the current live set until released: work started on it finishes on it."""
        return self._pool.lease()

    def add_builder(self, key: str, builder: Callable[[Mapping[str, Plugin]], Any]) -> Callable:
        """Derive ``lease().extras[key]`` from every new live set, built before each swap."""
        remove = self._pool.add_builder(key, builder)
        self._run(self._arebuild())
        return remove

    async def _arebuild(self) -> None:
        async with self._op_lock:
            self._commit(self._pool.current.live)

    def info(self) -> list[PluginInfo]:
        """One row per registered plugin, in load order (then the rest by name)."""
        registry = self._registry
        graph = registry.graph()
        try:
            order = graph.load_order()
        except DependencyError:
            order = []
        names = order + sorted(set(registry) - set(order))
        rows = []
        for name in names:
            entry = registry[name]
            health = self._health.get(name)
            rows.append(
                PluginInfo(
                    name=name,
                    kind=entry.cls.kind,
                    version=str(entry.cls.version),
                    state=self._states.get(name, PluginState.REGISTERED).value,
                    description=entry.cls.description,
                    dependencies=tuple(d for d, _ in entry.requires),
                    dependents=tuple(graph.dependents(name)),
                    priority=entry.priority,
                    enabled=entry.spec.enabled,
                    reload_count=self._reloads.get(name, 0),
                    health="unknown" if health is None else (health.healthy and "ok") or "failing",
                    config=redact(entry.config),
                    origin=entry.origin,
                    source=entry.source,
                    error=self._errors.get(name),
                )
            )
        return rows

    # -- events -----------------------------------------------------------------------

    def events(self, plugin: str | None = None, limit: int | None = None) -> list[PluginEvent]:
        """Recent events, oldest first."""
        return self._events.events(plugin, limit)

    def subscribe(self, callback: Callable[[PluginEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` on every new event (from the kernel's thread)."""
        return self._events.subscribe(callback)

    def watch(self, timeout: float | None = None) -> Iterator[PluginEvent]:
        """Block for new events (the seed's ``Watch()``); stops after ``timeout`` idle seconds."""
        return self._events.watch(timeout)

    def awatch(self) -> AsyncIterator[PluginEvent]:
        return self._events.awatch()

    # -- files --------------------------------------------------------------------------

    def watch_files(self, path: str | os.PathLike, **options: Any) -> Any:
        """Hot reload plugins from ``path`` when their files are saved; returns a stop handle."""
        from ._watcher import FileWatcher

        return FileWatcher(self, Path(path), **options)

    # -- gateway --------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Any:
        """Serve the OpenAI-compatible gateway built from the live plugins, on the kernel's loop.

        Returns a handle with ``url`` and ``stop()``; closing the kernel stops it too.
        """
        from ..gateway import serve

        return serve(self, host=host, port=port, **options)

    async def aserve(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Any:
        """Async twin of :meth:`serve`, usable from any loop (the kernel's included)."""
        from ..gateway import aserve

        return await aserve(self, host=host, port=port, **options)

    # -- display --------------------------------------------------------------------------

    def __repr__(self) -> str:
        active = sum(1 for s in self._states.values() if s == PluginState.ACTIVE)
        state = "closed" if self._closed else f"{active}/{len(self._registry)} active"
        return f"<helixlab.Kernel: {state}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        rows = self.info()
        lines = [repr(self), *(f"  {row}" for row in rows)]
        p.text("\n".join(lines))
