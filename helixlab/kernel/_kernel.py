"""The Kernel: one object owning the registry, the graph, the live instances and the events.

Public methods are synchronous so that a notebook cell calls them directly; each one that
does lifecycle work has an ``a``-prefixed async twin. The work itself runs on the
kernel's own loop (see ``_loop``), one lifecycle operation at a time; reads never block.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import (
    ConfigError,
    ConfigProblem,
    DependencyError,
    KernelClosedError,
    PluginNotFoundError,
    RegistryError,
    describe,
)
from . import _discovery, _health, _loader, _reload
from ._config import PluginSpec, parse_config
from ._events import EventLog, PluginEvent
from ._graph import DependencyGraph
from ._lifecycle import Timeouts
from ._live import Lease, LivePool
from ._loop import LoopThread
from ._plugin import Plugin, PluginState
from ._registry import Entry, Registry
from ._reports import HealthStatus, LoadReport, PluginInfo, ReloadReport
from ._secrets import redact, redact_text

__all__ = ["Kernel"]

ReloadTarget = str | type[Plugin]


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


def _exclusive(impl: Callable[..., Any]) -> Callable[..., Any]:
    """A public async method from ``impl``: it runs on the kernel's loop, one at a time."""

    @functools.wraps(impl)
    async def method(self: Kernel, *args: Any, **kwargs: Any) -> Any:
        return await self._arun(self._locked(impl(self, *args, **kwargs)))

    return method


def _blocking(amethod: Callable[..., Any]) -> Callable[..., Any]:
    """The synchronous twin of an ``a``-prefixed method: same arguments, same docstring.

    It waits for the kernel's loop from the calling thread, so it works in a Jupyter cell
    (whose own loop is running) as in a plain script.
    """

    @functools.wraps(amethod)
    def method(self: Kernel, *args: Any, **kwargs: Any) -> Any:
        return self._run(amethod(self, *args, **kwargs))

    method.__name__ = amethod.__name__.removeprefix("a")
    method.__qualname__ = f"Kernel.{method.__name__}"
    return method


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
        self._secrets: frozenset[str] = frozenset()
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

    async def _locked(self, coro: Any) -> Any:
        async with self._op_lock:
            return await coro

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

    @property
    def _registry(self) -> Registry:
        return self.__registry

    @_registry.setter
    def _registry(self, registry: Registry) -> None:
        self.__registry = registry
        self._secrets = frozenset().union(*(e.secrets for e in registry.entries.values()))

    def _redact(self, text: str) -> str:
        """``text`` with the configured secret values masked: errors may quote them."""
        return redact_text(text, self._secrets) if self._secrets and text else text

    def _emit(
        self, kind: str, name: str, detail: str = "", error: str | None = None, version: str = ""
    ) -> PluginEvent:
        if not version and name in self._registry:
            version = str(self._registry[name].cls.version)
        if self._secrets:
            detail, error = self._redact(detail), error and self._redact(error)
        return self._events.emit(kind, name, version, detail, error)

    # -- registry ---------------------------------------------------------------------

    @_exclusive
    async def aregister(
        self, plugin: type[Plugin] | Plugin, *, origin: str = "code", source: str | None = None
    ) -> str:
        """Add a plugin class (or instance) under its ``name``; returns the name."""
        return self._register_now(plugin, origin=origin, source=source)

    register = _blocking(aregister)

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
        self._states[name] = PluginState.REGISTERED
        self._reloads.setdefault(name, 0)
        self._emit("registered", name, detail=f"{cls.kind} from {origin}")
        return name

    @_exclusive
    async def aunregister(self, name: str) -> None:
        """Forget a plugin (unloading it first); refused while other plugins depend on it."""
        self._registry[name]
        users = self._registry.graph().dependents(name)
        if users:
            raise RegistryError(
                f"Cannot unregister {name!r}: {', '.join(users)} depend(s) on it; "
                f"unregister those first."
            )
        if name in self._pool.current.live:
            await _loader.unload(self, name)
        self._registry = self._registry.without(name)
        for table in (self._states, self._errors, self._reloads, self._health):
            table.pop(name, None)
        self._emit("unregistered", name)

    unregister = _blocking(aunregister)

    async def adiscover(self, path: str | os.PathLike) -> list[str]:
        """Register every plugin found in a plugins directory; returns their names."""
        units = _discovery.plugin_units(Path(path))
        found = []
        for unit in units:
            digest = await asyncio.to_thread(unit.digest)
            found.append((unit, digest, await asyncio.to_thread(_discovery.import_unit, unit)))
        return await self._arun(self._locked(self._register_found(found)))

    discover = _blocking(adiscover)

    async def _register_found(self, found: list) -> list[str]:
        names = []
        for unit, digest, classes in found:
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

    @_exclusive
    async def adiscover_entry_points(self, group: str = "helixlab.plugins") -> list[str]:
        """Register plugins that installed packages publish in the entry-point ``group``."""
        return [
            self._register_now(cls, origin="entry-point", source=source)
            for source, cls in _discovery.entry_point_plugins(group)
            if cls.name not in self._registry
        ]

    discover_entry_points = _blocking(adiscover_entry_points)

    # -- configuration ----------------------------------------------------------------

    @_exclusive
    async def aapply_config(
        self, data: str | os.PathLike | Mapping, *, source: str | None = None, line_offset: int = 0
    ) -> list[ReloadReport]:
        """Apply a YAML configuration (path, text or mapping) in the course's format.

        Every problem is reported at once, before anything changes. Built-in plugins it
        names are registered; running plugins whose configuration changed are reloaded
        with their dependents.
        """
        proposed = self._registry

        def check(spec: PluginSpec) -> list[ConfigProblem]:
            nonlocal proposed
            name = spec.name
            if not spec.enabled and name in self._pool.current.live:
                message = f"{name!r} is running; unload it before disabling it"
                return [ConfigProblem(message, spec.source, spec.line, name, "enabled")]
            try:
                if name in proposed:
                    proposed = proposed.with_spec(spec)
                elif (builtin := _discovery.builtin_plugin(name)) is not None:
                    proposed = proposed.added(builtin, origin="builtin", spec=spec)
                else:
                    known = ", ".join(sorted({*proposed, *_discovery.builtin_names()}))
                    message = (
                        f"no plugin named {name!r} is registered or built in "
                        f"(known: {known or 'none'})"
                    )
                    return [ConfigProblem(message, spec.source, spec.line, name)]
            except ConfigError as exc:
                return exc.problems
            return []

        doc = parse_config(data, source=source, line_offset=line_offset, check=check)
        proposed = _with_builtin_dependencies(proposed)
        try:  # a cycle or a missing dependency: refused now, with its line, not at load
            proposed.graph().validate()
        except DependencyError as exc:
            raise ConfigError(_graph_problems(exc, doc), doc.source) from exc
        old = self._registry
        changed = [n for n in doc.plugins if n in old and old[n].spec != proposed[n].spec]
        added = [n for n in proposed if n not in old]
        running = [n for n in changed if n in self._pool.current.live]
        reports = []
        if running:
            reports.append(await _reload.run_plan(self, running, registry=proposed))
        else:
            self._registry = proposed
        for name in added:
            self._states[name] = PluginState.REGISTERED
            self._reloads.setdefault(name, 0)
            self._emit("registered", name, detail="built in, from config")
        for name in changed:
            self._emit("configured", name, detail=f"from {doc.source}")
        return reports

    apply_config = _blocking(aapply_config)

    @_exclusive
    async def aconfigure(self, name: str, config: Mapping[str, Any]) -> ReloadReport | None:
        """Validate a new config for ``name``, then reload it with its dependents (if running).

        ``config`` is merged over the current one. A ConfigError leaves everything as it was.
        """
        entry = self._registry[name]
        spec = replace(
            entry.spec,
            config={**entry.spec.config, **config},
            source="configure()",
            line=None,
            lines={},  # the file's line numbers do not describe these values
        )
        return await _reload.reconfigure(self, spec)

    configure = _blocking(aconfigure)

    # -- lifecycle --------------------------------------------------------------------

    @_exclusive
    async def aload_all(self) -> LoadReport:
        """Init and start every enabled plugin in dependency order.

        A plugin that fails is marked failed; plugins that need it are skipped (the report
        says why); the others keep loading.
        """
        return await _loader.load(self, None)

    load_all = _blocking(aload_all)

    @_exclusive
    async def aload(self, name: str) -> LoadReport:
        """Load one plugin, and first whichever of its dependencies are not running."""
        return await _loader.load(self, [name])

    load = _blocking(aload)

    @_exclusive
    async def aunload(self, name: str) -> list[str]:
        """Stop ``name`` and, first, every running plugin that depends on it; returns that order."""
        self._registry[name]
        return await _loader.unload(self, name)

    unload = _blocking(aunload)

    @_exclusive
    async def areload(self, *targets: ReloadTarget, cascade: bool = True) -> ReloadReport:
        """Hot reload plugins (by name, or with a redefined class) with all their dependents.

        New instances are started aside, bound to each other, with state handed over; then
        one swap; then the old ones drain and stop, dependents first. If anything fails
        before the swap, the new instances are stopped, the old keep serving, and
        :class:`~helixlab.ReloadError` names the plugin and the phase. With
        ``cascade=False`` dependents are not restarted: their ``ctx.get`` answers the new
        instance from then on, but what they stored earlier is the old, stopped one.
        """
        return await _reload.run_plan(self, list(targets), cascade=cascade)

    reload = _blocking(areload)

    @_exclusive
    async def adefine(
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
        return await _reload.define(self, list(classes), source, origin, unit, fingerprints or {})

    define = _blocking(adefine)

    def preview_reload(self, *targets: ReloadTarget, cascade: bool = True) -> list[str]:
        """The plugins a reload would touch, in order, touching nothing."""
        return _reload.plan(self, list(targets), cascade=cascade).order

    async def aclose(self) -> None:
        """Stop everything (dependents first), the watchers and servers, then the loop."""
        if self._closed:
            return
        try:
            await self._arun(self._shutdown())
        finally:
            self._closed = True
            self._thread.stop()

    def close(self) -> None:
        """Stop everything (dependents first), the watchers and servers, then the loop."""
        if self._closed:
            return
        try:
            self._thread.run(self._shutdown())
        finally:
            self._closed = True
            self._thread.stop()

    async def _shutdown(self) -> None:
        for closer in reversed(self._closers):
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                self._emit("failed", "kernel", detail="while closing", error=describe(exc))
        self._closers.clear()
        async with self._op_lock:
            await _loader.stop_all(self)

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

    async def ahealth(self) -> dict[str, HealthStatus]:
        """Run every running plugin's health check concurrently, each under a timeout."""
        return await self._arun(_health.run(self))

    health = _blocking(ahealth)

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

    def add_builder(
        self, key: str, builder: Callable[[Mapping[str, Plugin], Any], Any]
    ) -> Callable:
        """Derive ``lease().extras[key]`` from every new live set, built before each swap.

        ``builder(instances, graph)`` gets the running instances and the DependencyGraph
        (load order, priorities) of the generation it builds; raising refuses that
        generation (a reload then rolls back).
        """
        remove = self._pool.add_builder(key, builder)

        async def rebuild() -> None:
            _loader.commit(self, self._pool.current.live)

        self._run(self._locked(rebuild()))
        return remove

    def info(self) -> list[PluginInfo]:
        """One row per registered plugin, in load order (then the rest by name)."""
        registry = self._registry
        graph = registry.graph()
        try:
            order = graph.load_order()
        except DependencyError:
            order = []
        names = order + sorted(set(registry) - set(order))
        users = graph.dependents_map()
        rows = []
        for name in names:
            entry = registry[name]
            health = self._health.get(name)
            state = self._states.get(name, PluginState.REGISTERED)
            rows.append(
                PluginInfo(
                    name=name,
                    kind=entry.cls.kind,
                    version=str(entry.cls.version),
                    state=state.value,
                    description=entry.cls.description,
                    dependencies=tuple(d for d, _ in entry.requires),
                    dependents=tuple(users.get(name, ())),
                    priority=entry.priority,
                    enabled=entry.spec.enabled,
                    reload_count=self._reloads.get(name, 0),
                    health=_health.column(state, health),
                    config=redact(entry.config),
                    origin=entry.origin,
                    source=entry.source,
                    error=self._errors.get(name),
                )
            )
        return rows

    async def alook_health(self) -> dict[str, HealthStatus]:
        """``ahealth`` without recording: no events, ``info()`` unchanged.

        A dashboard's or a live check panel's background look, so that what a notebook
        prints never depends on when such a look happened to run.
        """
        return await self._arun(_health.run(self, record=False))

    look_health = _blocking(alook_health)

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

    def _repr_html_(self) -> str:
        from ..notebook import _html

        return _html.kernel_html(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        rows = self.info()
        lines = [repr(self), *(f"  {row}" for row in rows)]
        p.text("\n".join(lines))
