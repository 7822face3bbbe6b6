"""Health: every running plugin's check at once, each under a timeout.

A check that hangs is reported unhealthy when its timeout expires; nobody waits for it
longer than that.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from ..errors import PluginError, describe
from ._book import Book
from ._lifecycle import Live, Runner
from ._live import LivePool
from ._plugin import PluginState
from ._reports import Degraded, HealthStatus
from ._workers import Progress

__all__ = ["Checks", "column", "word"]


class Checks:
    """Health checks of the running plugins, at most one in flight per plugin."""

    def __init__(self, book: Book, pool: LivePool, runner: Runner):
        self.book, self.pool, self.runner = book, pool, runner
        self._last: dict[str, tuple[Live, Progress, asyncio.Future]] = {}

    async def run(self, *, record: bool = True) -> dict[str, HealthStatus]:
        """Check the running plugins; failed ones are unhealthy too. Changes become events."""
        book = self.book
        with self.pool.lease() as lease:
            live = lease.generation.live
            timeout = self.runner.timeouts.health
            results = await asyncio.gather(*(self.check(v, timeout) for v in live.values()))
        # a plugin's own words, masked once: the events and the answer quote them
        statuses = {s.plugin: replace(s, detail=book.mask(s.detail)) for s in results}
        for name, record_ in sorted(book.records.items()):
            if record_.state == PluginState.FAILED:
                detail = record_.error or "failed"
                statuses[name] = HealthStatus(name, False, detail, record_.state.value)
        for name, status in statuses.items() if record else ():
            book.checked(name, status)
        return dict(sorted(statuses.items()))

    async def check(self, live: Live, timeout: float) -> HealthStatus:
        """One plugin's check: raising, returning False or returning a message means unhealthy
        (a :class:`Degraded` message: healthy, degraded).

        At most one check per plugin is in flight: a caller that comes while one runs gets its
        result; while a check that timed out has still not returned (its thread is hung), no
        new one starts and the answer is "still checking".
        """
        started = time.perf_counter()
        name = live.name
        last = self._last.get(name)
        if last is not None and last[0] is live and not last[1].finished:
            task = last[2]
            if task.done():  # it timed out, and its method has not returned since
                detail = f"still checking: the last check has not returned after {timeout:g}s"
                return HealthStatus(name, False, detail, "active", 0.0)
        else:
            progress = Progress()
            call = self.runner.call(live, "health", live.ctx, timeout=timeout, progress=progress)
            task = asyncio.ensure_future(call)
            self._last[name] = (live, progress, task)
        try:
            result = await asyncio.shield(task)
        except PluginError as exc:
            detail = describe(exc.cause) if exc.cause is not None else str(exc)
            if isinstance(exc.cause, TimeoutError):
                detail = f"no answer within {timeout:g}s"
            return HealthStatus(name, False, detail, "active", time.perf_counter() - started)
        degraded = isinstance(result, Degraded)  # serving, with less than it should: healthy
        healthy = degraded or (result is not False and not isinstance(result, str))
        detail = str(result) if isinstance(result, str) else ""
        elapsed = time.perf_counter() - started
        return HealthStatus(name, healthy, detail, "active", elapsed, degraded=degraded)


def column(state: PluginState, last: HealthStatus | None) -> str:
    """What a plugin row says of health: the last check counts only for the instance it saw."""
    if state == PluginState.FAILED:
        return "unhealthy"
    if state != PluginState.ACTIVE:
        return "-"
    if last is None:
        return "unknown"
    return word(last.healthy)


def word(healthy: bool) -> str:
    """Health in helixlab's one vocabulary: healthy, unhealthy (or unknown, not checked yet);
    ``active`` and ``failed`` are lifecycle states, not health."""
    return "healthy" if healthy else "unhealthy"
