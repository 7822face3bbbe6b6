"""The Kernel's reads: what is registered, running, failed, and what happened. They never
block and never take the operation lock (the Kernel inherits them from :class:`Views`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .._reprs import html_of
from ..errors import ConfigError, DependencyError, PluginNotFoundError
from . import _reload
from ._book import Book, Record
from ._events import PluginEvent
from ._graph import DependencyGraph
from ._health import column
from ._live import Lease, LivePool
from ._loop import LoopThread
from ._operations import Operations
from ._plugin import Plugin, PluginState
from ._registry import Entry
from ._reports import PluginInfo
from ._secrets import redact

__all__ = ["Views"]


class Views:
    _book: Book
    _pool: LivePool
    _thread: LoopThread
    _ops: Operations

    @property
    def last_cascade(self) -> tuple[str, ...]:
        """What the last reload or definition reloaded and started (or tried to), in order."""
        return self._book.last_cascade

    def mask(self, text: str) -> str:
        """``text`` with the known secret values masked: text another layer quotes."""
        return self._book.mask(text)

    @property
    def graph(self) -> DependencyGraph:
        """The dependency graph of the registered plugins, as it is now."""
        return self._book.registry.graph()

    @property
    def running(self) -> bool:
        """Whether the kernel's loop still runs (False once :meth:`close` has ended it)."""
        return self._thread.running

    @property
    def loop_kind(self) -> str:
        """Which event loop the kernel's thread runs: ``"asyncio"`` or ``"uvloop"``."""
        return self._thread.kind

    @property
    def names(self) -> list[str]:
        return list(self._book.registry)

    def __contains__(self, name: object) -> bool:
        return name in self._book.registry

    def get(self, name: str) -> Plugin:
        """The live instance of a running plugin."""
        try:
            return self._pool.current.live[name].plugin
        except KeyError:
            what = "loaded" if name in self._book.registry else "registered"
            raise PluginNotFoundError(name, self._pool.current.live, what=what) from None

    def plugin_class(self, name: str) -> type[Plugin]:
        return self._book.registry[name].cls

    def entry(self, name: str) -> Entry:
        return self._book.registry[name]

    def state(self, name: str) -> PluginState:
        return self._book.state(self._book.registry[name].name)

    def guards(self) -> tuple[str, ...]:
        """The enabled plugins that guard requests (``required``, e.g. custom-auth; one
        configured so but not registered too): the gateway serves only while each is live."""
        registry = self._book.registry
        pending = [n for n, s in list(self._book.pending.items()) if s.required and s.enabled]
        return tuple(sorted({*registry.guards, *pending})) if pending else registry.guards

    def failure(self, name: str) -> tuple[str, str] | None:
        """``(phase, error)`` of ``name``'s failure while it is failed, else None."""
        record = self._book.records.get(name)
        if record is None or record.state != PluginState.FAILED or record.error is None:
            return None  # a failed record has its error: Book.failed sets both
        return (record.error.partition(": ")[0] or "unknown", record.error)

    def reload_count(self, name: str) -> int:
        return (self._book.records.get(name) or Record()).reloads

    def lease(self) -> Lease:
        """Hold the current live set until released: work started on it finishes on it."""
        return self._pool.lease()

    def info(self) -> list[PluginInfo]:
        """One row per registered plugin, in load order (then the rest by name)."""
        registry = self._book.registry
        graph = registry.graph()
        try:
            order = graph.load_order()
        except DependencyError:
            order = []
        users = graph.dependents_map()
        rows = []
        for name in order + sorted(set(registry) - set(order)):
            entry, record = registry[name], self._book.records.get(name) or Record()
            rows.append(
                PluginInfo(
                    name=name,
                    kind=entry.cls.kind,
                    version=str(entry.cls.version),
                    state=record.state.value,
                    description=entry.cls.description,
                    dependencies=tuple(d for d, _ in entry.requires),
                    dependents=tuple(users.get(name, ())),
                    priority=entry.priority,
                    enabled=entry.spec.enabled,
                    reload_count=record.reloads,
                    health=column(record.state, record.health),
                    config=self._book.secrets.mask(redact(entry.config, marked=entry.spec.secrets)),
                    origin=entry.origin,
                    source=entry.source,
                    error=record.error,
                )
            )
        return rows

    def unregistered(self) -> ConfigError | None:
        """The ConfigError ``load_all`` would raise for configured plugins that nothing
        registered (each with its file and line), or None."""
        return _reload.unregistered(self._book)

    def preview_reload(self, *targets: str | type[Plugin], cascade: bool = True) -> list[str]:
        """The plugins a reload would touch, in order, touching nothing."""
        return _reload.plan(self._book, self._pool, list(targets), cascade=cascade).order

    def events(self, plugin: str | None = None, limit: int | None = None) -> list[PluginEvent]:
        """Recent events, oldest first."""
        return self._book.events.events(plugin, limit)

    def subscribe(self, callback: Callable[[PluginEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` on every new event (from the kernel's thread)."""
        return self._book.events.subscribe(callback)

    def watch(self, timeout: float | None = None) -> Iterator[PluginEvent]:
        """Block for new events (the seed's ``Watch()``); stops after ``timeout`` idle seconds."""
        return self._book.events.watch(timeout)

    def awatch(self) -> AsyncIterator[PluginEvent]:
        return self._book.events.awatch()

    def __repr__(self) -> str:
        active = sum(1 for r in self._book.records.values() if r.state == PluginState.ACTIVE)
        state = "closed" if self._ops.closed else f"{active}/{len(self._book.registry)} active"
        return f"<helixlab.Kernel: {state}>"

    def _repr_html_(self) -> str | None:
        return html_of(self)  # registered by the notebook layer

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("\n".join([repr(self), *(f"  {row}" for row in self.info())]))
