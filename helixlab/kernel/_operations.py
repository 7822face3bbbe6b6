"""Operations on the kernel's loop: one lifecycle operation at a time, and interrupts.

A lifecycle method of the Kernel is written once, as a coroutine run under the operation
lock (:func:`exclusive`); :func:`blocking` makes its synchronous twin, which works in a
Jupyter cell as in a script. :class:`Operations` (a base of ``Kernel``) submits the work
to the loop and waits, and turns an interrupt of the caller (KeyboardInterrupt, or the
cancellation of an async caller) into a request to the operation (finish or roll back:
see docs/architecture.md), never into a cancellation half-way. A prepared reload holds
the lock between ``prepare_*`` and its commit or abort.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import KernelClosedError, ReloadError, ReloadInterrupted
from ._loop import LoopThread, Submission
from ._reports import ReloadReport
from ._secrets import SecretBook
from ._transaction import PreparedReload, Transaction

__all__ = ["Operation", "Operations", "blocking", "exclusive"]


def exclusive(impl: Callable[..., Any]) -> Callable[..., Any]:
    """A public async method from ``impl``: it runs on the kernel's loop, one at a time."""

    @functools.wraps(impl)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._arun(self._locked(impl(self, *args, **kwargs)))

    return method


class Operation:
    """The lifecycle operation holding the lock: whether its caller was interrupted."""

    __slots__ = ("hurry", "interrupted", "task")

    def __init__(self, task: asyncio.Task | None):
        self.task = task
        self.interrupted = False
        self.hurry = asyncio.Event()  # set on interrupt: a drain stops waiting


def blocking(amethod: Callable[..., Any]) -> Callable[..., Any]:
    """The synchronous twin of an ``a``-prefixed method: same arguments, same docstring.

    It waits for the kernel's loop from the calling thread, so it works in a Jupyter cell
    (whose own loop is running) as in a plain script.
    """

    @functools.wraps(amethod)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._run(amethod(self, *args, **kwargs))

    method.__name__ = amethod.__name__.removeprefix("a")
    method.__qualname__ = f"Kernel.{method.__name__}"
    return method


class Operations:
    """How the Kernel runs work on its loop; the attributes are the Kernel's (see there)."""

    _thread: LoopThread
    _op_lock: asyncio.Lock
    _op: Operation | None
    _closing: bool
    _closed: bool
    _prepared: PreparedReload | None
    _background: set[asyncio.Task]
    _emit: Callable[..., Any]
    _secrets: SecretBook  # what leaves through _run/_arun is masked with it

    async def _locked(self, coro: Any) -> Any:
        async with self._op_lock:
            if self._closing:
                coro.close()
                raise KernelClosedError("The kernel is closing; create a new Kernel().")
            op = self._begin_op()
            try:
                return await coro
            finally:
                self._end_op(op)

    def _begin_op(self) -> Operation:
        self._op = op = Operation(asyncio.current_task())
        return op

    def _end_op(self, op: Operation) -> None:
        if self._op is op:
            self._op = None

    def _interrupt(self, submission: Submission) -> None:
        """On the loop: the caller of ``submission`` was interrupted (KeyboardInterrupt, cancel)."""
        op, task = self._op, submission.task
        if op is not None and task is not None and op.task is task:
            if not op.interrupted:
                op.interrupted = True
                op.hurry.set()
                self._emit(
                    "interrupted",
                    "kernel",
                    detail="caller interrupted: rolling back, or finishing after the swap",
                )
        elif task is None:  # not begun: it never will
            submission.future.cancel()
        elif not task.done():
            task.cancel()  # queued for the lock, or only reading: nothing half-done
            self._emit("interrupted", "kernel", detail="caller interrupted: given up, unchanged")

    def _interrupt_close(self, submission: Submission) -> None:
        """On the loop: an interrupt of ``close()`` changes nothing; it stops everything."""
        self._emit("interrupted", "kernel", detail="caller interrupted: closing goes on")

    def _discard(self, result: Any) -> None:
        """On the loop: a result its interrupted caller never received."""
        if isinstance(result, PreparedReload) and result.state == "prepared":
            self._keep(asyncio.ensure_future(result._finish("abort")))

    def _keep(self, task: asyncio.Task) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _check_open(self, coro: Any) -> None:
        if self._closed:
            coro.close()
            raise KernelClosedError("The kernel is closed; create a new Kernel().")

    def _run(self, coro: Any) -> Any:
        self._check_open(coro)
        interrupted: list[Submission] = []

        def on_interrupt(submission: Submission) -> None:
            interrupted.append(submission)
            self._interrupt(submission)

        try:  # the boundary: what leaves the loop (a report, an error) has its secrets masked
            return self._secrets.mask(
                self._thread.run(coro, on_interrupt=on_interrupt, discard=self._discard)
            )
        except KeyboardInterrupt:
            ended = _how_it_ended(interrupted[0]) if interrupted else None
            if ended is None:
                raise
            raise self._secrets.mask(ended) from None
        except BaseException as exc:
            self._secrets.mask(exc)
            raise

    async def _arun(self, coro: Any) -> Any:
        self._check_open(coro)
        try:
            return self._secrets.mask(
                await self._thread.arun(coro, on_interrupt=self._interrupt, discard=self._discard)
            )
        except BaseException as exc:
            self._secrets.mask(exc)
            raise

    async def _prepare(self, make: Callable[[], Any], timeout: float | None) -> Any:
        """Take the operation lock, prepare ``make()``'s transaction (or what it awaits to),
        keep the lock."""
        await self._op_lock.acquire()
        try:
            if self._closing:
                raise KernelClosedError("The kernel is closing; create a new Kernel().")
            op = self._begin_op()
            try:
                txn = make()
                if inspect.isawaitable(txn):  # made in a worker thread (a config to parse)
                    txn = await txn
                await txn.prepare()
            finally:
                self._end_op(op)
        except BaseException:
            self._op_lock.release()
            raise
        self._prepared = PreparedReload(self, txn, timeout)
        return self._prepared

    async def _transact(self, txn: Transaction) -> ReloadReport:
        """Prepare and commit at once (the operation lock held): reload, configure, define."""
        await txn.prepare()
        return await txn.commit()


def _how_it_ended(submission: Submission) -> ReloadInterrupted | None:
    """The one-line interrupt of a reload that ended after its caller pressed interrupt.

    None when there is nothing to say beyond the interrupt: the work never began, was a
    load or a close, or is still running (a second interrupt stopped the waiting).
    """
    future = submission.future
    if not future.done() or future.cancelled():
        return None
    error = future.exception()
    if isinstance(error, ReloadError) and error.report is not None and error.report.rolled_back:
        targets = ", ".join(error.report.targets) or error.plugin
        return ReloadInterrupted(
            f"Reload of {targets} interrupted: rolled back, the old versions keep serving.",
            rolled_back=True,
            report=error.report,
        )
    if error is None and isinstance(future.result(), ReloadReport) and future.result().order:
        report = future.result()
        return ReloadInterrupted(
            f"Reload of {', '.join(report.targets)} interrupted after its swap: finished, "
            f"the new versions serve.",
            rolled_back=False,
            report=report,
        )
    return None
