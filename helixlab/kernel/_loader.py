"""The loader (the course's PluginLoader): load and unload plugins, swap the live set.

Functions over the kernel's book, pool and runner, called with its operation lock held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from ..errors import ConfigError, DependencyError, PluginError, PluginTimeoutError, describe
from ._book import Book
from ._lifecycle import Live, Operation, Runner
from ._live import LivePool
from ._plugin import PluginState
from ._reports import LoadReport

__all__ = ["commit", "load", "stop_all", "to_load", "unload"]


def commit(book: Book, pool: LivePool, live: Mapping[str, Live], failing: str = "kernel") -> None:
    """Build the next generation (builders included) and swap it in."""
    try:
        new = pool.build(live, book.registry.graph())
    except PluginError:
        raise  # a builder naming the plugin and phase it refused
    except Exception as exc:
        raise PluginError(failing, "swap", cause=exc) from exc
    pool.swap(new)


def to_load(book: Book, pool: LivePool, names: Iterable[str] | None) -> list[str]:
    """The named plugins (all, for None) and what they need, not running yet, in order."""
    registry = book.registry
    graph = registry.graph()
    graph.validate()
    wanted = set(registry) if names is None else set()
    for name in names or ():
        if not graph.nodes[registry[name].name].enabled:
            message = f"Plugin {name!r} is disabled in the configuration; enable it to load it."
            raise DependencyError(message, plugins=(name,))
        wanted |= {name, *graph.dependencies(name, transitive=True)}
    return [n for n in graph.load_order() if n in wanted and n not in pool.current.live]


async def load(
    book: Book, pool: LivePool, runner: Runner, wanted: list[str], op: Operation | None = None
) -> LoadReport:
    """Start ``wanted`` (from :func:`to_load`) in this order: one that fails is marked failed,
    the ones that need it are skipped with the reason, the others go on loading. Once ``op``
    is interrupted, what started stays started and nothing more begins."""
    report = LoadReport()
    for name in wanted:
        entry = book.registry[name]
        if op is not None and op.interrupted:
            report.skipped[name] = "the load was interrupted before it"
        elif down := [d for d, _ in entry.requires if d not in pool.current.live]:
            failed = "failed" if book.state(down[0]) == PluginState.FAILED else "is not running"
            report.skipped[name] = f"needs {down[0]!r}, which {failed}"
        if name in report.skipped:
            book.emit("skipped", name, detail=report.skipped[name])
            continue
        new: dict[str, Live] = {}
        try:
            try:
                entry.check_loadable()  # required settings: validated again at load
            except ConfigError as exc:
                raise PluginError(name, "config", str(exc), cause=exc) from exc
            try:
                await runner.start([entry], pool.current.live, new, initialized=book.initialized)
            except PluginTimeoutError:  # the instance given to register() may still be in
                if entry.instance is not None:  # its phase: a later load makes a new one
                    book.registry = book.registry.with_entry(replace(entry, instance=None))
                raise
            book.started(name)
            try:
                commit(book, pool, {**pool.current.live, name: new[name]}, failing=name)
            except PluginError:  # a builder (the gateway) refused the new instance
                await runner.stop([new[name]], book.stop_failed, each=(book.stopping, book.stopped))
                raise
        except PluginError as exc:
            book.failed(name, exc)
            report.failed[name] = exc
            # masked as the LoadReport leaves (Operations.run/arun), with the rest of it
            report.reasons[name] = describe(exc.cause) if exc.cause else str(exc)
            continue
        report.order.append(name)
    return report


async def unload(
    book: Book, pool: LivePool, runner: Runner, name: str, *, dead: bool = False
) -> list[str]:
    """Stop ``name`` and, first, every running plugin that depends on it; returns that order.
    ``dead``: ``name`` already stopped and failed (a restart not undone): it only goes out of
    service with its dependents, and keeps its failed state."""
    current = pool.current.live
    order = [n for n in reversed(book.registry.graph().reload_order(name)) if n in current]
    to_stop = [n for n in order if not (dead and n == name)]
    await _retire(book, pool, runner, to_stop, {n: v for n, v in current.items() if n not in order})
    for n in to_stop:
        book.emit("unloaded", n)
    return order


async def stop_all(book: Book, pool: LivePool, runner: Runner) -> None:
    """Stop every running plugin, dependents first (even with a cycle among the unloaded)."""
    start_order, _ = book.registry.graph().display_order()  # never raises
    order = [n for n in reversed(start_order) if n in pool.current.live]
    await _retire(book, pool, runner, order, {})


async def _retire(
    book: Book, pool: LivePool, runner: Runner, order: list[str], remaining: dict[str, Live]
) -> None:
    """Swap in ``remaining``, let work on the older generations drain, stop ``order``."""
    lives = [pool.current.live[name] for name in order]
    commit(book, pool, remaining)
    await pool.drain(pool.current, runner.timeouts.drain)
    await runner.stop(lives, book.stop_failed, each=(book.stopping, book.stopped))
