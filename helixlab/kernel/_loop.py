"""The kernel's own asyncio loop, in a background thread.

A notebook cell already runs inside a loop, so ``asyncio.run`` is impossible there; the
kernel therefore runs its lifecycle coroutines (and the gateway) on a loop of its own and
the synchronous API waits on them from whatever thread calls it.

The loop is asyncio's own or uvloop's (``loop="uvloop"``, or ``"auto"``: uvloop when it
is installed); every guarantee of the kernel (interrupts, hangs, closing) holds on both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import HelixError, KernelClosedError

T = TypeVar("T")

__all__ = ["LOOPS", "LoopThread", "Submission", "loop_factory", "loop_kind"]

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


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: which implementation ``loop`` is."""
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"


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
        future = self.future
        if future.done():
            return
        if task.cancelled():
            future.cancel()
        elif task.exception() is not None:
            future.set_exception(task.exception())
        else:
            future.set_result(task.result())


#: How often a caller waiting on the loop wakes to run a signal handler it was sent.
SIGNAL_CHECK = 0.1


def _wait(future: concurrent.futures.Future) -> Any:
    """``future.result()``, waking every ``SIGNAL_CHECK`` s while it is pending.

    Why: Python runs signal handlers (the KeyboardInterrupt of Jupyter's interrupt button)
    in the main thread only, and a lock wait there is cut short only when the kernel
    delivers the signal to that very thread. It may pick another one: with uvloop running
    the kernel's loop, a SIGINT sent while a phase ran was left pending until the phase
    ended (its whole timeout), about once in 30 tries. Waking lets the handler run within
    ``SIGNAL_CHECK`` seconds whichever thread the signal reached.
    """
    while True:
        try:
            return future.result(SIGNAL_CHECK)
        except TimeoutError:
            if future.done():  # the work's own TimeoutError
                raise


class LoopThread:
    """An event loop running forever in a daemon thread, until :meth:`stop`."""

    def __init__(self, name: str = "helixlab-kernel", kind: str = "asyncio"):
        self.loop = loop_factory(kind)()
        self.kind = loop_kind(self.loop)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
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

    def submit(self, coro: Coroutine[Any, Any, T]) -> Submission:
        """Send ``coro`` to the loop; its task starts there, in order of submission."""
        submission = self.prepare(coro)
        self.schedule(submission)
        return submission

    def prepare(self, coro: Coroutine[Any, Any, T]) -> Submission:
        """A submission of ``coro``, not sent yet (so that an interrupt cannot lose it)."""
        if not self.running:
            coro.close()
            raise KernelClosedError("The kernel is closed; create a new Kernel().")
        return Submission(coro)

    def schedule(self, submission: Submission) -> None:
        self.loop.call_soon_threadsafe(submission._begin, self.loop)

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        on_interrupt: Callable[[Submission], Any] | None = None,
        discard: Callable[[Any], Any] | None = None,
    ) -> T:
        """Run ``coro`` on the kernel loop and wait for its result from this thread.

        A KeyboardInterrupt of the wait (Jupyter's interrupt button), wherever it lands,
        does not cancel the work half-way: ``on_interrupt(submission)`` is called on the
        loop (the work then finishes or rolls back on its own, or, not begun, never
        begins), the wait goes on until it has, and the interrupt is re-raised. A result
        nobody will receive goes to ``discard``. A second interrupt stops the waiting; the
        work still ends on its own.
        """
        self.refuse_in_loop(coro)
        submission = self.prepare(coro)
        try:  # from here on an interrupt, wherever it lands, finds the submission
            self.schedule(submission)
            return _wait(submission.future)
        except KeyboardInterrupt as interrupt:
            if on_interrupt is None:
                submission.future.cancel()
                raise
            self.call_soon(on_interrupt, submission)
            try:
                result = _wait(submission.future)
            except KeyboardInterrupt:
                raise
            except BaseException:
                pass  # the work's own ending (a rollback): the interrupt is what the caller sees
            else:
                if discard is not None:
                    self.call_soon(discard, result)
            raise interrupt

    async def arun(
        self,
        coro: Coroutine[Any, Any, T],
        on_interrupt: Callable[[Submission], Any] | None = None,
        discard: Callable[[Any], Any] | None = None,
    ) -> T:
        """Await ``coro`` on the kernel loop from any loop (or directly, if already on it).

        Cancelling the awaiting task is an interrupt, as in :meth:`run`.
        """
        if self.in_loop():
            return await coro
        submission = self.prepare(coro)
        future = asyncio.wrap_future(submission.future)
        try:
            self.schedule(submission)
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if on_interrupt is None or future.done():
                submission.future.cancel()
                raise
            self.call_soon(on_interrupt, submission)
            try:
                result = await asyncio.shield(future)
            except asyncio.CancelledError:
                raise
            except BaseException:
                pass
            else:
                if discard is not None:
                    self.call_soon(discard, result)
            raise

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` on the loop, from any thread (nothing, once it is closed)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def stop(self) -> None:
        if self._thread.is_alive() and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if not self.in_loop():
                self._thread.join(timeout=10)
