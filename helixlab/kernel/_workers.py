"""Worker threads for plugins' plain ``def`` methods, with a watchdog instead of a wait per call.

A plain lifecycle method must not run on the kernel's loop (it may block), but a thread
hop per call costs more than the whole reload of a trivial plugin. So a *job* (one call,
or a run of calls: the start-aside of several plugins, the stops after a swap) runs on
one worker thread from start to end, and tells a :class:`Progress` which phase it is in
and since when. The loop waits for the job once; a watchdog timer, set for when the
current phase's timeout would expire, abandons the job if that phase is still running:
the waiter gets the timeout at once, the job is told to do nothing more, and its thread
is left to the hung call. Nothing awaits it again. An *interrupt* (an asyncio.Event set
when the caller pressed interrupt) abandons the job the same way, at once.

The threads are daemon threads of our own (not the loop's default executor, whose
threads the interpreter joins at exit): a hung plain ``stop()`` cannot keep a script,
``helixlab serve`` or CI from exiting, and hung calls never starve later ones, since a
job only ever goes to an idle thread (a new one is started when none is idle).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Abandoned", "Progress", "WorkerPool", "settle"]

T = TypeVar("T")

#: an Event that abandons the job when set, and the error its waiter gets (given the label)
Interrupt = tuple[asyncio.Event, Callable[[Any], BaseException]]


class Abandoned(BaseException):
    """Raised inside a job whose waiter has given up on it: do nothing more."""


class Progress:
    """Where a job is: the phase it is in (its label), since when, and for how long at most."""

    __slots__ = ("abandoned", "finished", "label", "started", "timeout", "waiting")

    def __init__(self) -> None:
        self.abandoned = False
        self.finished = False  # the job returned or raised (even long after it was abandoned)
        self.label: Any = None  # None between phases
        self.started = 0.0
        self.timeout = 0.0
        self.waiting: Any = None  # a concurrent future the job waits on (a returned awaitable)

    def begin(self, label: Any, timeout: float) -> None:
        if self.abandoned:
            raise Abandoned
        self.started = time.monotonic()
        self.timeout = timeout
        self.label = label

    def end(self) -> None:
        self.label = None
        if self.abandoned:
            raise Abandoned


class _Worker(threading.Thread):
    def __init__(self, pool: WorkerPool, number: int):
        super().__init__(name=f"{pool.name}-{number}", daemon=True)
        self.pool = pool
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            item = self.jobs.get()
            if item is None:
                return
            job, progress, done = item
            try:
                result: tuple[bool, Any] = (True, job(progress))
            except BaseException as exc:  # every ending is the job's result
                result = (False, exc)
            progress.finished = True
            done(result)
            del item, job, progress, done, result
            if not self.pool._idle_again(self):
                return


class WorkerPool:
    """Daemon threads running jobs; a thread whose job hangs is simply not reused."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str = "helixlab-plain"):
        self.loop = loop
        self.name = name
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False

    def _idle_again(self, worker: _Worker) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._idle.append(worker)
            return True

    def _worker(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self._count += 1
            number = self._count
        worker = _Worker(self, number)
        worker.start()
        return worker

    async def run(
        self,
        job: Callable[[Progress], T],
        timed_out: Callable[[Any, float], BaseException],
        progress: Progress | None = None,
        interrupt: Interrupt | None = None,
    ) -> T:
        """``job(progress)`` on a worker thread; raises what it raises, or its phase's timeout.

        The job labels each phase with ``progress.begin(label, timeout)``; if one overruns,
        the waiter gets ``timed_out(label, timeout)`` and the job is abandoned.
        """
        loop = self.loop
        progress = progress or Progress()
        future = loop.create_future()

        def done(result: tuple[bool, Any]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, future, result)

        self._worker().jobs.put((job, progress, done))
        watch = self.watch(future, progress, timed_out, interrupt)
        try:
            return await future
        finally:
            watch.cancel()

    def watch(
        self,
        future: asyncio.Future,
        progress: Progress,
        timed_out: Callable[[Any, float], BaseException],
        interrupt: Interrupt | None = None,
    ) -> _Watch:
        """Fail ``future`` with the timeout when the current phase of its work overruns
        (or with the interrupt's error when its event is set)."""
        return _Watch(self, future, progress, timed_out, interrupt)

    def close(self) -> None:
        """Let idle threads end (busy ones are daemons: they never delay the interpreter)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.jobs.put(None)


class _Watch:
    """The watchdog of one job: it looks when the current phase's time would be up."""

    __slots__ = ("future", "handle", "pool", "progress", "timed_out", "waiter")

    def __init__(
        self,
        pool: WorkerPool,
        future: asyncio.Future,
        progress: Progress,
        timed_out: Callable[[Any, float], BaseException],
        interrupt: Interrupt | None = None,
    ):
        self.pool, self.future, self.progress, self.timed_out = pool, future, progress, timed_out
        self.handle = pool.loop.call_later(_FIRST_LOOK, self.look)
        self.waiter: asyncio.Task | None = None
        if interrupt is not None:
            event, error = interrupt
            self.waiter = pool.loop.create_task(event.wait())
            self.waiter.add_done_callback(
                lambda t: None if t.cancelled() else self.give_up(error(progress.label))
            )

    def cancel(self) -> None:
        self.handle.cancel()
        if self.waiter is not None:
            self.waiter.cancel()

    def look(self) -> None:
        future, progress = self.future, self.progress
        if future.done():
            return
        label = progress.label
        now = time.monotonic()
        loop = self.pool.loop
        if label is None:  # between two phases: look again soon
            self.handle = loop.call_later(_FIRST_LOOK, self.look)
            return
        deadline = progress.started + progress.timeout
        if now < deadline:
            self.handle = loop.call_later(deadline - now, self.look)
            return
        self.give_up(self.timed_out(label, progress.timeout))

    def give_up(self, error: BaseException) -> None:
        """Abandon the job: its waiter gets ``error`` now; the job does nothing more."""
        if self.future.done():
            return
        self.handle.cancel()
        self.progress.abandoned = True
        waiting = self.progress.waiting
        if waiting is not None:
            waiting.cancel()
        self.future.set_exception(error)


#: How soon the watchdog first looks at a job (then: when the current phase's time is up).
_FIRST_LOOK = 0.05


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
