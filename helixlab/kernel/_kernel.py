"""The Kernel: one object owning the registry, the graph, the live instances and the events.

Each lifecycle method is a coroutine (``aload``) run on the kernel's own loop, one operation
at a time (``_operations``), with a synchronous twin (``load``) that a notebook cell calls
directly; its reads (``_views``) never block.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..errors import HelixError, RegistryError, describe
from . import _builtins, _loader, _reload
from ._book import Book
from ._change import Change, Shorthands
from ._events import EventLog
from ._fingerprint import Fingerprint
from ._health import Checks
from ._lifecycle import Live, Runner, Timeouts
from ._live import LivePool
from ._loop import LoopThread
from ._operations import Operations, PreparedReload, blocking, exclusive
from ._plugin import Plugin
from ._registry import Entry
from ._reports import HealthStatus, LoadReport, ReloadReport
from ._secrets import SecretBook
from ._views import Views
from ._workers import IMPORT_TIMEOUT

__all__ = ["Kernel"]

#: what Kernel methods made by the layers above call, as ``"module:function"``: ``serve``,
#: ``aserve`` (the gateway), ``find``, ``define_file``, ``watch_files``, ``entry_points``
#: (``helixlab.sources``); set by ``helixlab/__init__.py``, so the kernel imports neither
LAYERS: dict[str, str] = {}

T = TypeVar("T")


def _layer(name: str) -> Callable[..., Any]:
    if (target := LAYERS.get(name)) is None:
        raise HelixError(
            f"Nothing is registered for Kernel.{name}(); import helixlab, which registers "
            f"the gateway and helixlab.sources."
        )
    return _builtins.load_target(target)


class Kernel(Shorthands, Views):
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
        self, *, timeouts: Timeouts | None = None, event_log_size: int = 1000, loop: str = "asyncio"
    ):
        self.timeouts = timeouts or Timeouts()
        self._thread = LoopThread(kind=loop)
        # secrets: the current config's and every proposed one's
        self._book = Book(EventLog(event_log_size), SecretBook())
        self._pool = LivePool(self._thread.loop)
        self._runner = Runner(self._thread.loop, self.timeouts, self, self._started_late)
        self._ops = Operations(self._thread, self._book)
        self._checks = Checks(self._book, self._pool, self._runner)
        self._late_lock = threading.Lock()  # a late start, against close() beginning
        self._closers: list[Callable[[], Any]] = []

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

    def _parts(self) -> tuple[Book, LivePool, Runner]:
        return self._book, self._pool, self._runner

    # -- registry ---------------------------------------------------------------------

    @exclusive
    async def aregister(
        self, plugin: type[Plugin] | Plugin, *, origin: str = "code", source: str | None = None
    ) -> str:
        """Add a plugin class (or instance) under its ``name``; returns the name."""
        return self._register_now(plugin, origin, source)

    register = blocking(aregister)

    def _register_now(
        self,
        plugin: Any,
        origin: str,
        source: str | None,
        unit: str | None = None,
        fingerprint: Fingerprint | None = None,
    ) -> str:
        """Register (lock held); ``unit``, ``fingerprint`` match later definitions to it."""
        book = self._book
        cls = type(plugin) if isinstance(plugin, Plugin) else plugin
        name = getattr(cls, "name", None)
        spec = book.pending.get(name) if isinstance(name, str) else None
        book.registry = book.registry.added(
            plugin, origin=origin, source=source, spec=spec, unit=unit, fingerprint=fingerprint
        )
        book.registered(cls.name, f"{cls.kind} from {origin}")
        return cls.name

    @exclusive
    async def aunregister(self, name: str) -> None:
        """Forget a plugin (unloading it first); refused while other plugins depend on it."""
        book = self._book
        if users := book.registry.graph().dependents(book.registry[name].name):
            raise RegistryError(
                f"Cannot unregister {name!r}: {', '.join(users)} depend(s) on it; "
                f"unregister those first."
            )
        if name in self._pool.current.live:
            await _loader.unload(*self._parts(), name)
        book.registry = book.registry.without(name)
        book.forgotten(name)

    unregister = blocking(aunregister)

    async def adiscover(self, path: str | os.PathLike) -> list[str]:
        """Register every plugin found in a plugins directory (``helixlab.sources.find``);
        returns their names."""
        self._book.looked.append(f"plugins directory {Path(path).resolve()}")
        found = await _layer("find")(self, path)

        async def register() -> list[str]:  # unit and content recorded: the watcher then
            return [  # refuses a rename and takes a save of the same content as no change
                self._register_now(cls, "file", source, unit, fingerprint)
                for cls, source, unit, fingerprint in found
                if cls.name not in self._book.registry
            ]

        return await self._ops.arun(self._ops.locked(register()))

    discover = blocking(adiscover)

    async def aimport(
        self,
        plugin: str,
        what: str,
        fn: Callable[[], T],
        *,
        key: str = "",
        content: str = "",
        timeout: float = IMPORT_TIMEOUT,
    ) -> T:
        """``fn()``, importing ``what`` (code of ``plugin``), on a worker thread under
        ``timeout``; while the last import of the same ``content`` under ``key`` (default
        ``what``) has not returned, refused at once (see ``_workers``)."""
        return await self._ops.arun(
            self._runner.plain.run_import(key or what, content, plugin, what, fn, timeout)
        )

    @exclusive
    async def adiscover_entry_points(self, group: str = "helixlab.plugins") -> list[str]:
        """Register plugins that installed packages publish in the entry-point ``group``."""
        self._book.looked.append(f"entry points {group!r}")
        return [
            self._register_now(cls, "entry-point", source)
            for source, cls in _layer("entry_points")(group)
            if cls.name not in self._book.registry
        ]

    discover_entry_points = blocking(adiscover_entry_points)

    # -- lifecycle --------------------------------------------------------------------

    @exclusive
    async def aload_all(self) -> LoadReport:
        """Init and start every enabled plugin in dependency order. One that fails is
        marked failed, those that need it skipped (the report says why), the others load.
        A plugin configured but never registered is a ConfigError first (file and line)."""
        if (error := self.unregistered()) is not None:
            raise error
        return await self._load(None)

    load_all = blocking(aload_all)

    @exclusive
    async def aload(self, name: str) -> LoadReport:
        """Load one plugin, and first whichever of its dependencies are not running."""
        return await self._load([name])

    load = blocking(aload)

    async def _load(self, names: list[str] | None) -> LoadReport:
        todo = _loader.to_load(self._book, self._pool, names)
        return await _loader.load(*self._parts(), todo, self._ops.op)

    @exclusive
    async def aunload(self, name: str) -> list[str]:
        """Stop ``name`` and, first, every running plugin that depends on it; returns that order."""
        self._book.registry[name]
        return await _loader.unload(*self._parts(), name)

    unload = blocking(aunload)

    # -- changes: made at once, or prepared up to their swap -----------------------------

    async def aapply(self, change: Change) -> ReloadReport:
        """Make ``change``: start aside, swap once, drain, stop the old. If anything fails
        before the swap, the new instances stop, the old keep serving, and ReloadError names
        the plugin and the phase."""
        change = await self._imported(change)
        return await self._ops.arun(self._ops.locked(self._apply(change)))

    apply = blocking(aapply)

    async def _apply(self, change: Change) -> ReloadReport:
        txn, op = await _reload.transaction(*self._parts(), change), self._ops.op
        assert op is not None  # the lock is held
        await txn.prepare(op)
        return await txn.commit(op)

    async def aprepare(self, change: Change, *, timeout: float | None = 60.0) -> PreparedReload:
        """:meth:`apply` up to its swap, held there (with the operation lock): a
        :class:`PreparedReload` to ``commit()`` or ``abort()``; after ``timeout`` seconds
        without either it aborts by itself. New plugins are loaded by ``commit()``."""
        change = await self._imported(change)
        return await self._ops.arun(
            self._ops.hold(lambda: _reload.transaction(*self._parts(), change), timeout)
        )

    prepare = blocking(aprepare)

    async def _imported(self, change: Change) -> Change:
        """A ``define_file`` change as the ``define`` of what its file holds."""
        return await _layer("define_file")(self, change) if change.kind == "define_file" else change

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if not self._ops.closed:
            with self._closing("aclose() was awaited"):
                await self._thread.arun(self._shutdown(), on_interrupt=self._ops.interrupt_close)

    def close(self) -> None:
        """Stop everything (dependents first), the watchers and servers, then the loop;
        operations queued behind it, and any started later, raise KernelClosedError. An
        interrupt does not cut it short: it stops everything, then re-raises."""
        if not self._ops.closed:
            with self._closing("close() was called"):
                self._thread.run(self._shutdown(), on_interrupt=self._ops.interrupt_close)

    @contextlib.contextmanager
    def _closing(self, what: str) -> Iterator[None]:
        if self._thread.in_loop():  # refused before anything changes
            raise HelixError(
                f"Kernel.{what} on the kernel's own loop (from a plugin, a subscriber or a "
                f"request); close the kernel from the code that created it."
            )
        with self._late_lock:
            self._ops.closing = True
        try:
            yield
        finally:
            self._ops.closed = True
            self._runner.plain.close()
            self._thread.stop()

    def _started_late(self, live: Live) -> None:
        """Stop an instance whose abandoned ``start`` returned: on the loop, or, once the
        kernel is closing, in the worker thread it returned in (the loop may be gone)."""
        with self._late_lock:
            if not self._ops.closing or self._thread.in_loop():
                self._thread.call_soon(lambda: self._ops.keep(self._stop_late(live)))
                return
        if (error := self._runner.stop_here(live)) is not None:
            self._book.stop_failed(live, error)
        self._book.abandoned(live)

    async def _stop_late(self, live: Live) -> None:
        await self._runner.stop([live], self._book.stop_failed)
        self._book.abandoned(live)

    async def _shutdown(self) -> None:
        if (prepared := self._ops.prepared) is not None and prepared.state == "prepared":
            await prepared._finish("abort")
        for closer in reversed(self._closers):
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                self._book.emit("failed", "kernel", detail="while closing", error=describe(exc))
        self._closers.clear()
        async with self._ops.lock:
            await _loader.stop_all(*self._parts())
        if self._ops.background:  # late stops and aborts, each under its own timeout
            await asyncio.wait(set(self._ops.background), timeout=self.timeouts.stop * 2)

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
        return await self._ops.arun(self._checks.run())

    health = blocking(ahealth)

    async def alook_health(self) -> dict[str, HealthStatus]:
        """``ahealth`` without recording (no events, ``info()`` unchanged): a dashboard's
        background look, so that what a notebook prints never depends on when it ran."""
        return await self._ops.arun(self._checks.run(record=False))

    look_health = blocking(alook_health)

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run ``coro`` on the kernel's loop (where the gateway and plugins run) and wait,
        from any other thread; after ``timeout`` seconds (or an interrupt) it is cancelled."""
        if timeout is None:
            return self._thread.run(coro)
        try:
            return self._thread.run(asyncio.wait_for(coro, timeout))
        finally:  # refused before it began (on the loop, or closed): closed, never awaited
            if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                coro.close()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Async twin of :meth:`run`, from any loop (the kernel's own included)."""
        return await self._thread.arun(coro)

    def add_builder(
        self, key: str, builder: Callable[[Mapping[str, Plugin], Any], Any]
    ) -> Callable:
        """Derive ``lease().extras[key]`` from every new live set, built before each swap:
        ``builder(instances, graph)`` (the generation's DependencyGraph); raising refuses
        that generation (a reload then rolls back)."""
        remove = self._pool.add_builder(key, builder)

        async def rebuild() -> None:
            _loader.commit(self._book, self._pool, self._pool.current.live)

        self._ops.run(self._ops.locked(rebuild()))
        return remove

    def add_verifier(
        self, key: str, verifier: Callable[[Any, Mapping[str, Entry]], Awaitable[None]]
    ) -> Callable[[], None]:
        """Before a reload swaps its new generation in, ``await verifier(generation, changed)``
        (``changed``: each plugin it replaces -> its new registry entry); raising (a
        PluginError naming plugin and phase) refuses the swap: the old set serves."""
        return self._pool.add_verifier(key, verifier)

    def file_error(self, plugin: str, detail: str, error: str) -> None:
        """Record a plugin file that could not be defined (event ``file_error``, masked)."""
        self._book.emit("file_error", plugin, detail, error)

    def watch_files(self, path: str | os.PathLike, **options: Any) -> Any:
        """Hot reload plugins from ``path`` when their files are saved: a ``FileWatcher``
        (``helixlab.sources``) to ``stop()``."""
        return _layer("watch_files")(self, str(path), **options)

    def serve(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Any:
        """Serve the OpenAI-compatible gateway of the live plugins on the kernel's loop: a
        handle with ``url`` and ``stop()`` (the gateway's ``serve``)."""
        return _layer("serve")(self, host=host, port=port, **options)

    async def aserve(self, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Any:
        """Async twin of :meth:`serve`, usable from any loop (the kernel's included)."""
        return await _layer("aserve")(self, host=host, port=port, **options)
