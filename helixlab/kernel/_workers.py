"""The kernel's own daemon worker threads, and a watchdog per job instead of a wait per call.

A job labels each phase it runs; the watchdog looks when that phase's timeout would expire.
A phase past its timeout, or interrupted, is *abandoned*: the waiter gets the error at once
and the job does nothing more; a hung call (a plugin's, an import's) keeps its thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import PluginTimeoutError

__all__ = ["IMPORT_TIMEOUT", "Abandoned", "Interrupt", "Progress", "WorkerPool"]

T = TypeVar("T")

#: an Event that abandons the job when set, and the error its waiter gets (given the label)
Interrupt = tuple[asyncio.Event, Callable[[Any], BaseException]]
#: Seconds an import may take before its caller is told (a file watcher's default too).
IMPORT_TIMEOUT = 10.0
#: How soon a watchdog first looks at its job (then: when the current phase's time is up).
_FIRST_LOOK = 0.05


class Abandoned(BaseException):
    """Raised inside a job whose waiter has given up on it: do nothing more."""


class Progress:
    """A job's watchdog: the phase it is in (its label), since when and for how long at most."""

    def __init__(self) -> None:
        self.abandoned = False
        self.finished = False  # the job returned or raised (even long after it was abandoned)
        self.label: Any = None  # None between phases
        self.started = self.timeout = 0.0
        self.waiting: Any = None  # what the job waits on (its task, an awaitable's future)

    def begin(self, label: Any, timeout: float) -> None:
        if self.abandoned:
            raise Abandoned
        self.started, self.timeout, self.label = time.monotonic(), timeout, label

    async def watch(
        self,
        future: asyncio.Future,
        timed_out: Callable[[Any, float], BaseException],
        interrupt: Interrupt | None = None,
    ) -> Any:
        """Await ``future``, failing it with ``timed_out(label, timeout)`` when the current
        phase overruns (or with the interrupt's error when its event is set)."""
        loop = future.get_loop()
        self.future, self.timed_out = future, timed_out
        self.handle = loop.call_later(_FIRST_LOOK, self._look)
        waiter = None
        if interrupt is not None:
            event, error = interrupt
            waiter = loop.create_task(event.wait())
            waiter.add_done_callback(
                lambda t: None if t.cancelled() else self._give_up(error(self.label))
            )
        try:
            return await future
        finally:
            self.handle.cancel()
            if waiter is not None:
                waiter.cancel()

    def _look(self) -> None:  # once the future is done, watch() cancels the next look
        label = self.label  # None between two phases: look again soon
        delay = _FIRST_LOOK if label is None else self.started + self.timeout - time.monotonic()
        if delay > 0:
            self.handle = self.future.get_loop().call_later(delay, self._look)
        else:
            self._give_up(self.timed_out(label, self.timeout))

    def _give_up(self, error: BaseException) -> None:
        if self.future.done():
            return
        self.handle.cancel()
        self.abandoned = True
        if self.waiting is not None:
            self.waiting.cancel()
        self.future.set_exception(error)


def settle(future: asyncio.Future, result: tuple[bool, Any]) -> None:
    """End ``future`` as its job ended (a job abandoned or cancelled: cancelled)."""
    if future.done():  # abandoned already: its late ending is nobody's business
        return
    ok, value = result
    if ok:
        future.set_result(value)
    elif isinstance(value, Abandoned | asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(value)


class WorkerPool:
    """The kernel's daemon threads for plain calls and plugin imports (not the loop's default
    executor, whose threads the interpreter joins at exit). A job only goes to an idle thread
    (a new one when none is), so a hung call keeps its thread and starves nothing."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._idle: list[queue.SimpleQueue] = []  # the job queue of each idle thread
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False
        self._imports: dict[str, tuple[str, Progress]] = {}  # in flight: key -> (content, it)

    async def run(
        self,
        fn: Callable[[], Any],
        progress: Progress,
        timed_out: Callable[[Any, float], BaseException],
        interrupt: Interrupt | None = None,
    ) -> Any:
        """``fn()`` on a worker thread, watched by ``progress``: its result, or the timeout."""
        future = self.loop.create_future()
        with self._lock:
            if self._idle:
                jobs = self._idle.pop()
            else:  # none idle: a new thread
                self._count += 1
                jobs = queue.SimpleQueue()
                name = f"helixlab-plain-{self._count}"
                threading.Thread(target=self._serve, args=(jobs,), name=name, daemon=True).start()
        jobs.put((fn, progress, future))
        return await progress.watch(future, timed_out, interrupt)

    async def run_import(
        self, key: str, content: str, name: str, what: str, fn: Callable[[], T], timeout: float
    ) -> T:
        """``fn()``, an import of ``what`` for plugin ``name``, on a worker thread; on the
        kernel's loop. PluginTimeoutError (phase ``import``) past ``timeout``, or at once
        while the last import of this ``content`` under ``key`` has not returned: Python
        cannot stop an import, so one that has not returned blocks a new one of its content."""

        def timed_out(label: Any, seconds: float, still: bool = False) -> PluginTimeoutError:
            text = (
                f"is still importing (its last import has not finished after {seconds:g}s); "
                "fix its top-level code and save it again."
                if still
                else f"did not finish importing within {seconds:g}s (a sleep or a loop at its "
                "top level?); the running version keeps serving."
            )
            cause = TimeoutError(f"no import within {seconds:g}s")
            return PluginTimeoutError(name, "import", f"{what} {text}", cause=cause)

        last = self._imports.get(key)
        if last is not None and not last[1].finished and last[0] == content:
            raise timed_out(what, timeout, still=True)
        progress = Progress()
        progress.begin(what, timeout)
        self._imports[key] = (content, progress)
        return await self.run(fn, progress, timed_out)

    def _serve(self, jobs: queue.SimpleQueue) -> None:
        while (item := jobs.get()) is not None:
            fn, progress, future = item
            try:
                result: tuple[bool, Any] = (True, fn())
            except BaseException as exc:  # every ending is the job's result
                result = (False, exc)
            progress.label = None  # ended: the watchdog waits for its result, however late
            progress.finished = True
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(settle, future, result)
            del item, fn, progress, future, result  # nothing of a job outlives it
            with self._lock:
                if self._closed:
                    return
                self._idle.append(jobs)

    def close(self) -> None:
        """Let idle threads end (busy ones are daemons: they never delay the interpreter)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for jobs in idle:
            jobs.put(None)
