"""Generations of live instances, leases on them, and draining.

The live set is one immutable :class:`Generation`; a reload builds the next one aside and
swaps one reference. Work (a gateway request, a stream) holds a :class:`Lease` on the
generation it began with; old instances stop once every older generation is idle.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import PluginNotFoundError
from ._lifecycle import Live, Operation
from ._plugin import Plugin

__all__ = ["Generation", "Lease", "LivePool"]

#: ``builder(instances, graph)``: ``graph`` is the generation's (in a reload, not yet the kernel's)
Builder = Callable[[Mapping[str, Plugin], Any], Any]
#: ``await verifier(generation, changed)`` before a swap (``changed``: name -> new Entry);
#: raising refuses the swap, and the reload rolls back.
Verifier = Callable[["Generation", Mapping[str, Any]], Awaitable[None]]


class Generation:
    """One immutable set of live instances, plus what builders derived from it."""

    __slots__ = ("_idle", "abandoned", "extras", "leases", "live", "number", "tasks")

    def __init__(self, number: int, live: Mapping[str, Live], extras: Mapping[str, Any]):
        self.number = number
        self.live: Mapping[str, Live] = MappingProxyType(dict(live))
        self.extras: Mapping[str, Any] = MappingProxyType(dict(extras))
        self.leases = 0
        self.abandoned = False  # its drain timed out: its instances are stopped
        self.tasks: set[asyncio.Task] = set()  # of leases bound to a task (gateway requests)
        self._idle: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<Generation {self.number}: {', '.join(self.live) or 'empty'}>"


class Lease:
    """Holds a generation alive (not drained) until released; a context manager, sync or async."""

    __slots__ = ("_pool", "_released", "_task", "generation")

    def __init__(self, pool: LivePool, generation: Generation):
        self._pool = pool
        self.generation = generation
        self._released = False
        self._task: asyncio.Task | None = None

    def bind(self, task: asyncio.Task | None = None) -> Lease:
        """Tie the lease to a task (the current one), cancelled if the drain of its generation
        times out: a client that never reads cannot hold old instances past the deadline."""
        self._task = task or asyncio.current_task()
        if self._task is not None:
            self.generation.tasks.add(self._task)
        return self

    def get(self, name: str) -> Plugin:
        try:
            return self.generation.live[name].plugin
        except KeyError:
            raise PluginNotFoundError(name, self.generation.live, what="loaded") from None

    @property
    def instances(self) -> Mapping[str, Plugin]:
        return {name: live.plugin for name, live in self.generation.live.items()}

    @property
    def extras(self) -> Mapping[str, Any]:
        return self.generation.extras

    @property
    def abandoned(self) -> bool:
        """The drain of its generation ended without it: its instances are being stopped, so
        the work (a long stream) should end now, with an error event."""
        return self.generation.abandoned

    def release(self) -> None:
        if not self._released:
            self._released = True
            if self._task is not None:
                self.generation.tasks.discard(self._task)
            self._pool._release(self.generation)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class LivePool:
    """The current generation, the builders deriving its extras, and retired ones still leased."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._builders: dict[str, Builder] = {}
        self._verifiers: dict[str, Verifier] = {}
        self._retired: list[Generation] = []
        self.current = Generation(0, {}, {})

    def add_builder(self, key: str, builder: Builder) -> Callable[[], None]:
        """Derive ``extras[key]`` from each new generation (e.g. the gateway's middleware chain)."""
        self._builders[key] = builder
        return lambda: self._builders.pop(key, None) and None

    def build(self, live: Mapping[str, Live], graph: Any) -> Generation:
        """The next generation, built aside; a builder's exception propagates, nothing changes."""
        instances = {name: entry.plugin for name, entry in live.items()}
        extras = {key: build(instances, graph) for key, build in self._builders.items()}
        return Generation(self.current.number + 1, live, extras)

    def add_verifier(self, key: str, verifier: Verifier) -> Callable[[], None]:
        """Check each generation a reload built aside before it is swapped in (a canary)."""
        self._verifiers[key] = verifier
        return lambda: self._verifiers.pop(key, None) and None

    async def verify(self, new: Generation, changed: Mapping[str, Any]) -> None:
        """Run the verifiers on ``new``; the first that raises refuses it."""
        for verifier in list(self._verifiers.values()):
            await verifier(new, changed)

    def swap(self, new: Generation) -> None:
        """Make ``new`` current in one step; the old one, still leased, is retired."""
        with self._lock:
            old, self.current = self.current, new
            if old.leases:
                old._idle = asyncio.Event()
                self._retired.append(old)

    def lease(self) -> Lease:
        with self._lock:
            gen = self.current
            gen.leases += 1
        return Lease(self, gen)

    def _release(self, gen: Generation) -> None:
        with self._lock:
            gen.leases -= 1
            event = gen._idle if gen.leases == 0 and not gen.abandoned else None
            if event is not None:
                self._retired.remove(gen)
        if event is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(event.set)

    async def drain(
        self, up_to: Generation, timeout: float, hurry: Operation | None = None
    ) -> bool:
        """Wait until no lease is held on a generation up to ``up_to``, or ``hurry.hurry`` is
        set (the caller was interrupted). A generation not drained in time is abandoned: its
        leases learn it, and no later drain waits for it again."""
        with self._lock:
            gens = [g for g in self._retired if g.number <= up_to.number and g._idle]
        idle = [g._idle.wait() for g in gens if g._idle is not None]
        if not idle:
            return True
        waiting = asyncio.ensure_future(asyncio.gather(*idle))
        # a cancelled gather's CancelledError: seen, not logged
        waiting.add_done_callback(lambda gather: gather.cancelled() or gather.exception())
        watch: set[asyncio.Future[Any]] = {waiting}
        if hurry is not None:
            watch.add(asyncio.ensure_future(hurry.hurry.wait()))
        try:
            await asyncio.wait(watch, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in watch:
                task.cancel()
        if waiting.done() and not waiting.cancelled():
            return True
        with self._lock:
            for gen in gens:
                if gen in self._retired:
                    self._retired.remove(gen)
                gen.abandoned = True
                tasks, gen.tasks = gen.tasks, set()
                for task in tasks:  # requests still on it: bounded by the drain deadline
                    task.cancel()
        return False
