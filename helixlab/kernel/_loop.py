"""The kernel's own asyncio loop (asyncio's or uvloop's) in a daemon thread.

A notebook cell already runs inside a loop, so the kernel runs its coroutines (and the
gateway) on a loop of its own, and the synchronous API waits on them from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import HelixError, KernelClosedError

__all__ = ["LOOPS", "LoopThread", "Submission", "loop_factory"]

T = TypeVar("T")

#: What ``Kernel(loop=...)`` and ``helixlab serve --loop`` accept.
LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(kind: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new loop of ``kind``: ``"asyncio"``, ``"uvloop"``, or ``"auto"`` (uvloop
    when it can be imported, else asyncio's). Asking for uvloop without it installed raises."""
    if kind not in LOOPS:
        raise ValueError(f"loop={kind!r}: choose one of {', '.join(LOOPS)}.")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise HelixError(
                    "loop='uvloop' needs the uvloop package, which is not installed here "
                    "(pip install uvloop; it does not exist on Windows); use loop='asyncio'."
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


class Submission:
    """A coroutine sent to the loop: its task once begun there, the future its caller waits on."""

    __slots__ = ("coro", "future", "task")

    def __init__(self, coro: Coroutine[Any, Any, Any]):
        self.coro = coro
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.task: asyncio.Task | None = None  # set on the loop, before the task's first step

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.future.cancelled():  # given up before it began: it never runs
            self.coro.close()
            return
        self.task = task = loop.create_task(self.coro)
        task.add_done_callback(self._done)
        self.future.add_done_callback(
            lambda f: f.cancelled() and loop.call_soon_threadsafe(task.cancel)
        )

    def _done(self, task: asyncio.Task) -> None:
        if self.future.done():
            return
        if task.cancelled():
            self.future.cancel()
        elif (error := task.exception()) is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(task.result())


def _wait(future: concurrent.futures.Future) -> concurrent.futures.Future:
    """Wait until ``future`` is done, waking every 0.1 s: a signal handler (Jupyter's
    interrupt) runs only then if the signal reached another thread (with uvloop, 1 in 30)."""
    while not future.done():
        concurrent.futures.wait((future,), 0.1)
    return future


class LoopThread:
    """An event loop running forever in a daemon thread, until :meth:`stop`."""

    def __init__(self, name: str = "helixlab-kernel", kind: str = "asyncio"):
        self.loop = loop_factory(kind)()
        self.kind = "uvloop" if type(self.loop).__module__.startswith("uvloop") else "asyncio"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:  # stopped: what is left is cancelled, then the loop closed
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:  # bounded: a task that swallows its cancellation is left behind
                self.loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def in_loop(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def refuse_in_loop(self, coro: Any) -> None:
        """Raise (closing ``coro``) when called on the loop: waiting there would deadlock."""
        if self.in_loop():
            coro.close()
            raise HelixError(
                "A synchronous kernel method was called from the kernel's own loop (inside a "
                "plugin's lifecycle method or a gateway request); await its async twin instead, "
                "e.g. `await kernel.areload(...)`."
            )

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Submission:
        """``coro`` made ready for the loop, to be sent by :meth:`send` (its task starts in
        order of sending): the caller holds it first, so that an interrupt finds it."""
        if not self.running:
            coro.close()
            raise KernelClosedError("The kernel is closed; create a new Kernel().")
        return Submission(coro)

    def send(self, submission: Submission) -> Submission:
        self.loop.call_soon_threadsafe(submission._begin, self.loop)
        return submission

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        on_interrupt: Callable[[Submission], Any] | None = None,
        discard: Callable[[Any], Any] | None = None,
    ) -> T:
        """Run ``coro`` on the kernel loop and wait for its result from this thread.

        A KeyboardInterrupt of the wait, wherever it lands, goes to ``on_interrupt(submission)``
        on the loop (the work finishes or rolls back; not begun, it never begins); the wait
        goes on until the work ended, then the interrupt is re-raised (a result nobody
        receives goes to ``discard``). A second interrupt stops the waiting, not the work.
        """
        self.refuse_in_loop(coro)
        submission = self.submit(coro)
        try:  # from here on an interrupt, wherever it lands, finds the submission
            return _wait(self.send(submission).future).result()
        except KeyboardInterrupt:
            if not self._interrupted(submission, on_interrupt):
                raise
            self._discard(_wait(submission.future), discard)
            raise

    async def arun(
        self,
        coro: Coroutine[Any, Any, T],
        on_interrupt: Callable[[Submission], Any] | None = None,
        discard: Callable[[Any], Any] | None = None,
    ) -> T:
        """Await ``coro`` on the kernel loop from any loop (directly, on it); cancelling the
        awaiting task is an interrupt, as in :meth:`run`."""
        if self.in_loop():
            return await coro
        submission = self.submit(coro)
        future = asyncio.wrap_future(submission.future)
        try:
            self.send(submission)
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done() or not self._interrupted(submission, on_interrupt):
                raise
            await asyncio.wait((future,))
            self._discard(future, discard)
            raise

    def _interrupted(self, submission: Submission, on_interrupt: Callable | None) -> bool:
        """Tell the work its caller was interrupted (False, and nothing told: none listens)."""
        if on_interrupt is None:
            submission.future.cancel()
            return False
        self.call_soon(on_interrupt, submission)
        return True

    def _discard(self, future: Any, discard: Callable[[Any], Any] | None) -> None:
        """The result of interrupted work, done now, to ``discard`` (its error is the work's)."""
        if discard is not None and not future.cancelled() and future.exception() is None:
            self.call_soon(discard, future.result())

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` on the loop, from any thread (nothing, once it is closed)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def stop(self) -> None:
        if self.running:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if not self.in_loop():
                self._thread.join(timeout=10)
