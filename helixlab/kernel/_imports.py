"""Plugin code imported for a reload on the kernel's worker threads, under a timeout.

Python cannot stop an import that sleeps or loops at its top level: its thread is left to
it, its waiter told at ``timeout``, and while it has not returned an import of the same
content is refused at once ("still importing"); saving new content imports again.
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
        self._workers = workers
        self._importing: dict[str, tuple[str, Progress]] = {}  # key -> (content, its import)

    async def run(
        self, key: str, content: str, name: str, what: str, fn: Callable[[], T], timeout: float
    ) -> T:
        """``fn()``, an import of ``what`` for plugin ``name``, on a worker thread; on the
        kernel's loop. PluginTimeoutError (phase ``import``) past ``timeout``, or at once
        while the last import of this ``content`` under ``key`` has not returned."""
        last = self._importing.get(key)
        if last is not None and not last[1].finished and last[0] == content:
            raise PluginTimeoutError(
                name,
                "import",
                f"{what} is still importing (its last import has not finished after "
                f"{timeout:g}s); fix its top-level code and save it again.",
                cause=TimeoutError(f"no import within {timeout:g}s"),
            )

        def timed_out(label: Any, seconds: float) -> PluginTimeoutError:
            return PluginTimeoutError(
                name,
                "import",
                f"{what} did not finish importing within {seconds:g}s (a sleep or a loop at "
                f"its top level?); the running version keeps serving.",
                cause=TimeoutError(f"no import within {seconds:g}s"),
            )

        progress = Progress()
        progress.begin(what, timeout)
        self._importing[key] = (content, progress)
        return await self._workers.run(fn, progress, timed_out)
