"""Health: every running plugin's check at once, each under the health timeout; a check
that hangs is unhealthy at its timeout, and no new one starts until it returns."""

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

__all__ = ["Checks", "column"]


class Checks:
    """Health checks of the running plugins, at most one in flight per plugin."""

    def __init__(self, book: Book, pool: LivePool, runner: Runner):
        self.book, self.pool, self.runner = book, pool, runner
        self._last: dict[str, tuple[Live, Progress, asyncio.Future]] = {}

    async def run(self, *, record: bool = True) -> dict[str, HealthStatus]:
        """Check the running plugins; failed ones are unhealthy too. Changes become events."""
        book = self.book
        with self.pool.lease() as lease:
            results = await asyncio.gather(*map(self.check, lease.generation.live.values()))
        # a plugin's own words, masked once: the events and the answer quote them
        statuses = {s.plugin: replace(s, detail=book.mask(s.detail)) for s in results}
        for name, record_ in sorted(book.records.items()):
            if record_.state == PluginState.FAILED:
                statuses[name] = HealthStatus(name, False, record_.error or "failed", "failed")
        for name, status in statuses.items() if record else ():
            book.checked(name, status)
        return dict(sorted(statuses.items()))

    async def check(self, live: Live) -> HealthStatus:
        """One plugin's check: raising, False or a message is unhealthy (a :class:`Degraded`
        message: healthy, degraded). A caller that comes while one runs gets its result."""
        started, name, timeout = time.perf_counter(), live.name, self.runner.timeouts.health
        last = self._last.get(name)
        if last is not None and last[0] is live and not last[1].finished:
            task = last[2]
            if task.done():  # it timed out, and its method has not returned since
                detail = f"still checking: the last check has not returned after {timeout:g}s"
                return HealthStatus(name, False, detail)
        else:
            progress = Progress()
            call = self.runner.call(live, "health", live.ctx, timeout=timeout, progress=progress)
            task = asyncio.ensure_future(call)
            self._last[name] = (live, progress, task)
        try:
            result = await asyncio.shield(task)
        except PluginError as exc:
            degraded = healthy = False
            detail = describe(exc.cause) if exc.cause is not None else str(exc)
            if isinstance(exc.cause, TimeoutError):
                detail = f"no answer within {timeout:g}s"
        else:
            degraded = isinstance(result, Degraded)  # serving, with less than it should: healthy
            healthy = degraded or (result is not False and not isinstance(result, str))
            detail = str(result) if isinstance(result, str) else ""
        elapsed = time.perf_counter() - started
        return HealthStatus(name, healthy, detail, elapsed=elapsed, degraded=degraded)


def column(state: PluginState, last: HealthStatus | None) -> str:
    """What a plugin row says of health (helixlab's words: healthy, unhealthy, unknown, -);
    the last check counts only for the instance it saw."""
    if state != PluginState.ACTIVE:
        return "unhealthy" if state == PluginState.FAILED else "-"
    return "unknown" if last is None else ("healthy" if last.healthy else "unhealthy")
