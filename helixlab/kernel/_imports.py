"""Importing plugin code for a reload: on the kernel's worker threads, under a timeout.

A plugin file (or an installed module) may sleep or loop at its top level. Python cannot
stop an import, so each runs on one of the kernel's own daemon worker threads (never the
loop's default executor, whose few threads hung imports would exhaust until even
``apply_config`` waited for good) and its waiter gives up after ``timeout``: the thread
is left to the import. While that import has not returned, a new import of the same
content is refused at once ("still importing") instead of starting another thread, so
retrying (the file watcher, the admin API, ``helixlab reload``) costs nothing and every
caller gets its answer within the timeout. Saving new content imports again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import PluginTimeoutError
from ._workers import Progress, WorkerPool

__all__ = ["IMPORT_TIMEOUT", "Imports"]

T = TypeVar("T")

#: Seconds an import may take before its caller is told (a file watcher's default too).
IMPORT_TIMEOUT = 10.0


class Imports:
    """The kernel's imports in flight, by what they import (a unit's root, a module)."""

    def __init__(self, workers: WorkerPool):
        self._workers = workers  # the kernel's worker threads for plain calls
        self._importing: dict[str, tuple[str, Progress]] = {}  # key -> (content, its import)

    async def run(
        self, key: str, content: str, name: str, what: str, fn: Callable[[], T], timeout: float
    ) -> T:
        """``fn()`` (an import of ``what``, for plugin ``name``) on a worker thread.

        Must be awaited on the kernel's loop. Raises PluginTimeoutError (phase ``import``)
        when it overruns ``timeout``, or at once while the last import of the same
        ``content`` under ``key`` has not returned; otherwise what ``fn`` raises.
        """
        last = self._importing.get(key)
        if last is not None and not last[1].finished and last[0] == content:
            raise PluginTimeoutError(
                name,
                "import",
                f"{what} is still importing (its last import has not finished after "
                f"{timeout:g}s); fix its top-level code and save it again.",
                cause=TimeoutError(f"no import within {timeout:g}s"),
            )
        progress = Progress()
        self._importing[key] = (content, progress)

        def job(progress: Progress) -> T:
            progress.begin(what, timeout)
            result = fn()
            progress.end()
            return result

        def timed_out(label: Any, seconds: float) -> PluginTimeoutError:
            return PluginTimeoutError(
                name,
                "import",
                f"{what} did not finish importing within {seconds:g}s (a sleep or a loop at "
                f"its top level?); the running version keeps serving.",
                cause=TimeoutError(f"no import within {seconds:g}s"),
            )

        return await self._workers.run(job, timed_out, progress)
