"""The Kernel: one object owning the registry, the graph, the live instances and the events.

Public methods are synchronous so that a notebook cell calls them directly; each one that
does lifecycle work has an ``a``-prefixed async twin. The work itself runs on the
kernel's own loop (see ``_loop``), one lifecycle operation at a time; reads never block.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from .._reprs import html_of
from ..errors import (
    DependencyError,
    HelixError,
    PluginNotFoundError,
    RegistryError,
    ReloadError,
    describe,
)
from . import _discovery, _health, _loader, _reload
from ._change import Change
from ._config import PluginSpec
from ._events import EventLog, PluginEvent
from ._fingerprint import Fingerprint
from ._graph import DependencyGraph
from ._imports import IMPORT_TIMEOUT, Imports
from ._lifecycle import Live, Runner, Timeouts
from ._live import Lease, LivePool
from ._loop import LoopThread
from ._operations import Operation, Operations, blocking, exclusive
from ._plugin import Plugin, PluginState
from ._registry import Entry, Registry
from ._reports import HealthStatus, LoadReport, PluginInfo, ReloadReport
from ._secrets import SecretBook, redact, secret_values, split_marked
from ._transaction import PreparedReload, Transaction

__all__ = ["Kernel"]

ReloadTarget = str | type[Plugin]

#: How long a PreparedReload may wait for its commit() or abort() before it aborts itself.
PREPARE_TIMEOUT = 60.0


#: what ``Kernel.serve``/``aserve`` call, as ``"module:function"`` taking the kernel first;
#: set by the package (``helixlab/__init__.py``) so that the kernel imports no gateway
SERVERS: dict[str, str] = {}

T = TypeVar("T")


def _server(name: str) -> Callable[..., Any]:
    target = SERVERS.get(name)
    if target is None:
        raise HelixError(
            f"No gateway is registered for Kernel.{name}(); import helixlab (which registers "
            f"helixlab.gateway), or call helixlab.gateway.{name}(kernel, ...)."
        )
    return _discovery.load_target(target)


class Kernel(Operations):
    """A plugin kernel: register plugins, load them in dependency order, hot reload them.

    Its lifecycle coroutines (and a gateway it serves) run on a loop of its own, in a
    thread: asyncio's (``loop="asyncio"``, the default), uvloop's (``loop="uvloop"``), or
    uvloop when installed (``loop="auto"``, what ``helixlab serve`` uses).

    >>> import helixlab as hx
    >>> class Hello(hx.Plugin):
    ...     name = "hello"
    >>> with hx.Kernel() as k:
    ...     k.register(Hello)
    ...     k.load_all()
    'hello'
    loaded 1: hello
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        event_log_size: int = 1000,
        loop: str = "asyncio",
    ):
        self.timeouts = timeouts or Timeouts()
        self._thread = LoopThread(kind=loop)
        self._events = EventLog(event_log_size)
        self._pool = LivePool(self._thread.loop)
        self._runner = Runner(self._thread.loop, late_start=self._started_late)
        self._late_lock = threading.Lock()  # a late start, against close() beginning
        self._secrets = SecretBook()  # the current config's and every proposed one's
        self._registry = Registry()
        self._states: dict[str, PluginState] = {}
        self._errors: dict[str, str] = {}
        self._reloads: dict[str, int] = {}
        self._health: dict[str, HealthStatus] = {}
        self._checks: dict[str, tuple] = {}  # name -> (instance, Progress, task): one in flight
        self._pending: dict[str, PluginSpec] = {}
        self._op_lock = asyncio.Lock()
        self._closers: list[Callable[[], Any]] = []
        self._looked: list[str] = []  # where discovery looked, for "no plugin named X"
        #: what the last reload or definition reloaded and started (or tried to), in order
        self.last_cascade: tuple[str, ...] = ()
        self._closed = False
        self._closing = False  # close() began: queued and new operations are refused
        self._op: Operation | None = None
        self._prepared: PreparedReload | None = None
        self._background: set[asyncio.Task] = set()
        self._imports = Imports(self._runner.plain)  # plugin imports in flight, under a timeout

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

    @property
    def _registry(self) -> Registry:
        return self.__registry

    @_registry.setter
    def _registry(self, registry: Registry) -> None:
        self.__registry = registry
        self._secrets.learn(registry.secrets)  # kept up to date entry by entry: no rescan

    def _learn(self, spec: PluginSpec, cls: type[Plugin] | None) -> None:
        """Know the secrets of a configuration before applying it: its errors may quote them."""
        model = getattr(cls, "config_model", None)
        self._secrets.learn(secret_values(spec.config, model=model, marked=spec.secrets))

    def mask(self, text: str) -> str:
        """``text`` with the known secret values masked, for text that leaves the process
        and that the kernel did not produce itself (an error another layer quotes)."""
        return self._secrets.mask_text(text) if text else text

    _redact = mask  # the kernel's own modules' name for it

    def _emit(
        self, kind: str, name: str, detail: str = "", error: str | None = None, version: str = ""
    ) -> PluginEvent:
        if not version and name in self._registry:
            version = str(self._registry[name].cls.version)
        detail, error = self._redact(detail), error and self._redact(error)
        return self._events.emit(kind, name, version, detail, error)

    def _emit_many(self, kind: str, rows: Iterable[tuple[str, str, str]]) -> None:
        """``_emit(kind, name, detail, version=version)`` for each ``(name, version, detail)``:
        a reload's per-plugin events, each distinct text masked once."""
        masked: dict[str, str] = {}
        redact = self._redact

        def mask(text: str) -> str:
            found = masked.get(text)
            if found is None:
                found = masked[text] = redact(text)
            return found

        self._events.emit_many(kind, [(name, v, mask(d)) for name, v, d in rows])

    # -- registry ---------------------------------------------------------------------

    @exclusive
    async def aregister(
        self, plugin: type[Plugin] | Plugin, *, origin: str = "code", source: str | None = None
    ) -> str:
        """Add a plugin class (or instance) under its ``name``; returns the name."""
        return self._register_now(plugin, origin=origin, source=source)

    register = blocking(aregister)

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

    @exclusive
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

    unregister = blocking(aunregister)

    async def adiscover(self, path: str | os.PathLike) -> list[str]:
        """Register every plugin found in a plugins directory; returns their names."""
        units = _discovery.plugin_units(Path(path))
        self._looked.append(f"plugins directory {Path(path).resolve()}")
        found = []
        for unit in units:
            classes, prints = await self.aimport_unit(unit.root, unit.path)
            found.append((unit, prints, classes))
        return await self._arun(self._locked(self._register_found(found)))

    discover = blocking(adiscover)

    async def aimport_unit(
        self, root: str | os.PathLike, path: str | os.PathLike, *, timeout: float = IMPORT_TIMEOUT
    ) -> tuple[list[type[Plugin]], dict[str, Fingerprint]]:
        """Import a plugin file or package (``root``; ``path`` the file defining the plugins)
        as a plugins directory holds it: its plugin classes, and each one's fingerprint.

        The import runs on the kernel's worker threads: after ``timeout`` seconds the caller
        gets a PluginTimeoutError (phase ``import``) and the import is left to its thread;
        while it has not returned, importing the same content again is refused at once.
        The file watcher imports this way, and so does the gateway's admin API.
        """
        root_, path_ = Path(root), Path(path)
        unit = _discovery.Unit(root_.stem if root_.is_file() else root_.name, path_, root_)

        async def run() -> tuple[list[type[Plugin]], dict[str, Fingerprint]]:
            # read before importing: a save in between is a change for the next import
            sources = await asyncio.to_thread(unit.read)
            classes = await self._imports.run(
                str(unit.root),
                sources.digest,
                unit.name,
                unit.path.name,
                lambda: _discovery.import_unit(unit),
                timeout,
            )
            return classes, {cls.name: sources.fingerprint(cls) for cls in classes}

        return await self._arun(run())

    async def areimport_module(
        self, name: str, module: str, fn: Callable[[], Any], *, timeout: float = IMPORT_TIMEOUT
    ) -> Any:
        """``fn()`` — re-importing ``module`` for plugin ``name`` — as :meth:`aimport_unit`
        runs an import: on a worker thread, under ``timeout``, one stuck import at a time."""
        return await self._arun(self._imports.run(module, "", name, module, fn, timeout))

    async def _register_found(self, found: list) -> list[str]:
        names = []
        for unit, prints, classes in found:
            for cls in classes:
                if cls.name not in self._registry:
                    # unit and content recorded: the file watcher then refuses a rename
                    # and takes a save of unchanged content as no change
                    name = self._register_now(
                        cls,
                        origin="file",
                        source=str(unit.path),
                        unit=str(unit.root),
                        fingerprint=prints[cls.name],
                    )
                    names.append(name)
        return names

    @exclusive
    async def adiscover_entry_points(self, group: str = "helixlab.plugins") -> list[str]:
        """Register plugins that installed packages publish in the entry-point ``group``."""
        self._looked.append(f"entry points {group!r}")
        return [
            self._register_now(cls, origin="entry-point", source=source)
            for source, cls in _discovery.entry_point_plugins(group)
            if cls.name not in self._registry
        ]

    discover_entry_points = blocking(adiscover_entry_points)

    # -- configuration ----------------------------------------------------------------

    def _configured(self, name: str, config: Mapping[str, Any]) -> PluginSpec:
        entry = self._registry[name]
        config, marked = split_marked(dict(config))  # `{value: ..., secret: true}` too
        spec = replace(
            entry.spec,
            config={**entry.spec.config, **config},
            secrets=entry.spec.secrets | marked,
            source="configure()",
            line=None,
            lines={},  # the file's line numbers do not describe these values
        )
        self._learn(spec, entry.cls)  # before validating: its errors may quote them
        return spec

    # -- lifecycle --------------------------------------------------------------------

    @exclusive
    async def aload_all(self) -> LoadReport:
        """Init and start every enabled plugin in dependency order.

        A plugin that fails is marked failed; plugins that need it are skipped (the report
        says why); the others keep loading. A plugin configured but never registered is a
        ConfigError (with its file and line), before anything starts.
        """
        error = _reload.unregistered(self)
        if error is not None:
            raise error
        return await _loader.load(self, None)

    load_all = blocking(aload_all)

    @exclusive
    async def aload(self, name: str) -> LoadReport:
        """Load one plugin, and first whichever of its dependencies are not running."""
        return await _loader.load(self, [name])

    load = blocking(aload)

    @exclusive
    async def aunload(self, name: str) -> list[str]:
        """Stop ``name`` and, first, every running plugin that depends on it; returns that order."""
        self._registry[name]
        return await _loader.unload(self, name)

    unload = blocking(aunload)

    # -- changes: made at once, or prepared up to their swap -----------------------------

    async def aapply(self, change: Change) -> ReloadReport:
        """Make ``change`` (see :class:`Change`): start aside, swap once, drain, stop the old.

        If anything fails before the swap, the new instances are stopped, the old keep
        serving, and :class:`~helixlab.ReloadError` names the plugin and the phase.
        """
        change = await self._imported(change)
        return await self._arun(self._locked(self._apply(change)))

    apply = blocking(aapply)

    async def _apply(self, change: Change) -> ReloadReport:
        txn = await self._transaction(change)
        await txn.prepare()
        return await txn.commit()

    async def aprepare(
        self, change: Change, *, timeout: float | None = PREPARE_TIMEOUT
    ) -> PreparedReload:
        """Make ``change`` up to its swap and hold it there: a :class:`PreparedReload`.

        The new instances are started aside and the next generation is built, exactly as
        :meth:`apply` does, then the kernel waits (holding its operation lock) for
        ``prepared.commit()`` (swap, drain, stop the old; the ReloadReport) or
        ``prepared.abort()`` (roll back as a failed reload). After ``timeout`` seconds
        without either it aborts by itself. A failure while preparing rolls back and
        raises ReloadError, as :meth:`apply` does. Plugins new to the kernel are
        registered and loaded by ``commit()``, after the swap.
        """
        change = await self._imported(change)
        return await self._arun(self._prepare(lambda: self._transaction(change), timeout))

    prepare = blocking(aprepare)

    async def _imported(self, change: Change) -> Change:
        """A ``define_file`` change as the ``define`` of what its file holds (imported
        before the operation lock: a hung import holds no other operation)."""
        if change.kind != "define_file":
            return change
        unit = _discovery.unit_for(Path(change.directory), Path(change.path))
        if unit is None:
            raise ReloadError(
                Path(change.path).stem,
                "import",
                f"{change.path} is not plugin code in the plugins directory {change.directory}.",
            )
        classes, prints = await self.aimport_unit(unit.root, unit.path)
        source = change.source or str(unit.path)
        return Change.define(
            classes, source=source, origin="file", unit=str(unit.root), fingerprints=prints
        )

    async def _transaction(self, change: Change) -> Transaction:
        """The transaction making ``change`` (the operation lock held)."""
        if change.kind == "reload":
            return _reload.reload(self, list(change.targets), cascade=change.cascade)
        if change.kind == "configure":
            return _reload.reconfigure(self, self._configured(change.plugin, change.values))
        if change.kind == "apply_config":  # read and parsed in a worker thread
            return await asyncio.to_thread(
                _reload.apply_config,
                self,
                change.document,
                source=change.source,
                line_offset=change.line_offset,
            )
        if change.kind == "define":
            return _reload.define(
                self,
                list(change.classes),
                change.source or "",
                change.origin,
                change.unit,
                change.fingerprints,
            )
        raise ValueError(f"Kernel.apply() cannot make a {change.kind} change here.")

    # the shorthands of apply/prepare used by notebooks, labs, the gateway and the fleet

    def reload(self, *targets: ReloadTarget, cascade: bool = True) -> ReloadReport:
        """Hot reload plugins (by name, or with a redefined class) with all their dependents.

        New instances are started aside, bound to each other, with state handed over; then
        one swap; then the old ones drain and stop, dependents first. If anything fails
        before the swap, the new instances are stopped, the old keep serving, and
        :class:`~helixlab.ReloadError` names the plugin and the phase. With
        ``cascade=False`` dependents are not restarted: their ``ctx.get`` answers the new
        instance from then on, but what they stored earlier is the old, stopped one.
        """
        return self.apply(Change.reload(*targets, cascade=cascade))

    async def areload(self, *targets: ReloadTarget, cascade: bool = True) -> ReloadReport:
        return await self.aapply(Change.reload(*targets, cascade=cascade))

    def configure(self, name: str, config: Mapping[str, Any]) -> ReloadReport | None:
        """Validate a new config for ``name``, then reload it with its dependents (if running).

        ``config`` is merged over the current one. A ConfigError leaves everything as it was.
        """
        report = self.apply(Change.configure(name, config))
        return report if report.order else None

    async def aconfigure(self, name: str, config: Mapping[str, Any]) -> ReloadReport | None:
        report = await self.aapply(Change.configure(name, config))
        return report if report.order else None

    def apply_config(
        self, data: str | os.PathLike | Mapping, *, source: str | None = None, line_offset: int = 0
    ) -> list[ReloadReport]:
        """Apply a YAML configuration (path, text or mapping) in the course's format.

        Every problem is reported at once, before anything changes. Built-in plugins it
        names are registered; running plugins whose configuration changed are reloaded
        with their dependents.
        """
        report = self.apply(Change.apply_config(data, source=source, line_offset=line_offset))
        return [report] if report.order else []

    async def aapply_config(
        self, data: str | os.PathLike | Mapping, *, source: str | None = None, line_offset: int = 0
    ) -> list[ReloadReport]:
        change = Change.apply_config(data, source=source, line_offset=line_offset)
        return [report] if (report := await self.aapply(change)).order else []

    def define(self, classes: Iterable[type[Plugin]], **how: Any) -> ReloadReport:
        """Bring new code in: register and load new plugins, hot reload changed ones.

        This is what a ``%%helix plugin`` cell and a saved plugin file do (``source=``,
        ``origin=``, ``unit=``, ``fingerprints=``: see :meth:`Change.define`). A class whose
        fingerprint (its code) equals the registered one is left alone; a changed one is
        reloaded with its dependents. ``unit`` identifies the cell or file: a unit that no
        longer defines a plugin it defined before (a rename) is refused.
        """
        return self.apply(Change.define(classes, **how))

    async def adefine(self, classes: Iterable[type[Plugin]], **how: Any) -> ReloadReport:
        return await self.aapply(Change.define(classes, **how))

    def prepare_reload(
        self, *targets: ReloadTarget, cascade: bool = True, timeout: float | None = PREPARE_TIMEOUT
    ) -> PreparedReload:
        """:meth:`reload` up to its swap (see :meth:`prepare`)."""
        return self.prepare(Change.reload(*targets, cascade=cascade), timeout=timeout)

    async def aprepare_reload(
        self, *targets: ReloadTarget, cascade: bool = True, timeout: float | None = PREPARE_TIMEOUT
    ) -> PreparedReload:
        return await self.aprepare(Change.reload(*targets, cascade=cascade), timeout=timeout)

    def prepare_configure(
        self, name: str, config: Mapping[str, Any], *, timeout: float | None = PREPARE_TIMEOUT
    ) -> PreparedReload:
        """:meth:`configure` up to its swap (see :meth:`prepare`)."""
        return self.prepare(Change.configure(name, config), timeout=timeout)

    async def aprepare_configure(
        self, name: str, config: Mapping[str, Any], *, timeout: float | None = PREPARE_TIMEOUT
    ) -> PreparedReload:
        return await self.aprepare(Change.configure(name, config), timeout=timeout)

    def prepare_apply_config(
        self,
        data: str | os.PathLike | Mapping,
        *,
        source: str | None = None,
        line_offset: int = 0,
        timeout: float | None = PREPARE_TIMEOUT,
    ) -> PreparedReload:
        """:meth:`apply_config` up to its swap (see :meth:`prepare`)."""
        change = Change.apply_config(data, source=source, line_offset=line_offset)
        return self.prepare(change, timeout=timeout)

    async def aprepare_apply_config(
        self,
        data: str | os.PathLike | Mapping,
        *,
        source: str | None = None,
        line_offset: int = 0,
        timeout: float | None = PREPARE_TIMEOUT,
    ) -> PreparedReload:
        change = Change.apply_config(data, source=source, line_offset=line_offset)
        return await self.aprepare(change, timeout=timeout)

    def prepare_define(
        self,
        classes: Iterable[type[Plugin]],
        *,
        timeout: float | None = PREPARE_TIMEOUT,
        **how: Any,
    ) -> PreparedReload:
        """:meth:`define` up to its swap (see :meth:`prepare`)."""
        return self.prepare(Change.define(classes, **how), timeout=timeout)

    async def aprepare_define(
        self,
        classes: Iterable[type[Plugin]],
        *,
        timeout: float | None = PREPARE_TIMEOUT,
        **how: Any,
    ) -> PreparedReload:
        return await self.aprepare(Change.define(classes, **how), timeout=timeout)

    def preview_reload(self, *targets: ReloadTarget, cascade: bool = True) -> list[str]:
        """The plugins a reload would touch, in order, touching nothing."""
        return _reload.plan(self, list(targets), cascade=cascade).order

    async def aclose(self) -> None:
        """Stop everything (dependents first), the watchers and servers, then the loop."""
        if self._closed:
            return
        if self._thread.in_loop():
            raise HelixError(
                "Kernel.aclose() was awaited on the kernel's own loop (from a plugin, a "
                "subscriber or a request); close the kernel from the code that created it."
            )
        self._begin_closing()
        try:
            await self._thread.arun(self._shutdown(), on_interrupt=self._interrupt_close)
        finally:
            self._closed = True
            self._runner.close()
            self._thread.stop()

    def close(self) -> None:
        """Stop everything (dependents first), the watchers and servers, then the loop.

        Operations queued behind it, and any started later, raise KernelClosedError.
        """
        if self._closed:
            return
        if self._thread.in_loop():  # refused before anything changes
            raise HelixError(
                "Kernel.close() was called on the kernel's own loop (from a plugin, a "
                "subscriber or a request); close the kernel from the code that created it."
            )
        self._begin_closing()
        try:  # an interrupt does not cut it short: close stops everything, then re-raises
            self._thread.run(self._shutdown(), on_interrupt=self._interrupt_close)
        finally:
            self._closed = True
            self._runner.close()
            self._thread.stop()

    def _begin_closing(self) -> None:
        with self._late_lock:
            self._closing = True

    def _started_late(self, live: Live) -> None:
        """Where an abandoned ``start`` returned (a worker thread, or the loop): stop that
        instance. While the kernel is open, on the loop as any stop; once it is closing, a
        worker thread stops it itself, as the loop may stop before a queued stop ran (a
        stop queued earlier runs before ``_shutdown``, which waits for it)."""
        with self._late_lock:
            if not self._closing or self._thread.in_loop():
                self._thread.call_soon(_loader.stop_abandoned, self, live)
                return
        _loader.stop_abandoned_here(self, live)

    async def _shutdown(self) -> None:
        prepared = self._prepared
        if prepared is not None and prepared.state == "prepared":
            await prepared._finish("abort")
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
        if self._background:  # late stops and aborts, each under its own timeout
            await asyncio.wait(set(self._background), timeout=self.timeouts.stop * 2)

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

    health = blocking(ahealth)

    # -- reads (never block) ------------------------------------------------------------

    @property
    def graph(self) -> DependencyGraph:
        """The dependency graph of the registered plugins, as it is now."""
        return self._registry.graph()

    @property
    def running(self) -> bool:
        """Whether the kernel's loop still runs (False once :meth:`close` has ended it)."""
        return self._thread.running

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run ``coro`` on the kernel's loop and wait for its result, from any other thread.

        Where the gateway and the plugins run: a test or a check awaits a provider there.
        After ``timeout`` seconds the work is cancelled and TimeoutError raised. An
        interrupt (Jupyter's button) cancels it too.
        """
        if timeout is not None:
            coro = asyncio.wait_for(coro, timeout)
        return self._thread.run(coro)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Async twin of :meth:`run`, from any loop (the kernel's own included)."""
        return await self._thread.arun(coro)

    @property
    def loop_kind(self) -> str:
        """Which event loop the kernel's thread runs: ``"asyncio"`` or ``"uvloop"``
        (``Kernel(loop="uvloop")``, or ``"auto"``: uvloop when installed)."""
        return self._thread.kind

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

    def guards(self) -> tuple[str, ...]:
        """The enabled plugins that guard requests (``required``, e.g. custom-auth), by name.

        The gateway serves a request only on a generation where every one of them is live;
        otherwise it answers 503 naming the plugin and why (fail closed). A plugin the
        configuration marks ``required: true`` that nothing registered (its file failed to
        import, or it is not discovered yet) guards too: it is not serving.
        """
        pending = [n for n, s in list(self._pending.items()) if s.required and s.enabled]
        if not pending:
            return self._registry.guards
        return tuple(sorted({*self._registry.guards, *pending}))

    def failure(self, name: str) -> tuple[str, str] | None:
        """``(phase, error)`` of ``name``'s failure while it is failed, else None."""
        if self._states.get(name) != PluginState.FAILED:
            return None
        error = self._errors.get(name, "")
        phase, _, _ = error.partition(": ")
        return (phase or "unknown", error)

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

    def add_verifier(
        self, key: str, verifier: Callable[[Any, Mapping[str, Entry]], Awaitable[None]]
    ) -> Callable[[], None]:
        """Before a reload swaps its new generation in, ``await verifier(generation, changed)``.

        ``generation.extras`` holds what the builders built for it (the gateway's chain);
        ``changed`` maps each plugin it replaces to its new registry entry. Raising (a
        PluginError names the plugin and the phase) refuses the swap: the reload rolls
        back, the old set serves.
        """
        return self._pool.add_verifier(key, verifier)

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
                    config=self._secrets.mask(redact(entry.config, marked=entry.spec.secrets)),
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

    look_health = blocking(alook_health)

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

        Returns a handle with ``url`` and ``stop()``; closing the kernel stops it too. (The
        gateway's ``serve(kernel, ...)``, found through :data:`SERVERS`: the kernel does not
        import the gateway.)
        """
        return _server("serve")(self, host=host, port=port, **options)

    async def aserve(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Any:
        """Async twin of :meth:`serve`, usable from any loop (the kernel's included)."""
        return await _server("aserve")(self, host=host, port=port, **options)

    # -- display --------------------------------------------------------------------------

    def __repr__(self) -> str:
        active = sum(1 for s in self._states.values() if s == PluginState.ACTIVE)
        state = "closed" if self._closed else f"{active}/{len(self._registry)} active"
        return f"<helixlab.Kernel: {state}>"

    def _repr_html_(self) -> str | None:
        return html_of(self)  # registered by the notebook layer

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        rows = self.info()
        lines = [repr(self), *(f"  {row}" for row in rows)]
        p.text("\n".join(lines))
