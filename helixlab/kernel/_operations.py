"""Operations on the kernel's loop: one lifecycle operation at a time, interrupts, and the
boundary where what an operation returns or raises leaves the kernel (masked, once).

A Kernel method is one coroutine under the operation lock (:func:`exclusive`) and its sync
twin (:func:`blocking`). An interrupted caller asks the operation to finish or roll back,
never cuts it half-way. The lock is taken and released here only: by ``locked``, or held
from ``hold`` (a prepared change) to the end of its commit or abort (``PreparedReload``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from ..errors import KernelClosedError, ReloadError, ReloadInterrupted
from ._book import Book
from ._lifecycle import Operation
from ._loop import LoopThread, Submission
from ._reports import ReloadReport
from ._transaction import Transaction

__all__ = ["Operations", "PreparedReload", "blocking", "exclusive"]

T = TypeVar("T")

#: inside an operation's coroutine on the loop: a nested boundary only awaits
_INSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("helixlab_inside", default=False)


def exclusive(impl: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """A public async method from ``impl``: on the kernel's loop, one at a time."""

    @functools.wraps(impl)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._ops.arun(self._ops.locked(impl(self, *args, **kwargs)))

    return method


def blocking(amethod: Callable[..., Any]) -> Callable[..., Any]:
    """The synchronous twin of an ``a``-prefixed method: same arguments, same docstring."""

    @functools.wraps(amethod)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._ops.run(amethod(self, *args, **kwargs))

    method.__name__ = amethod.__name__.removeprefix("a")
    method.__qualname__ = f"{amethod.__qualname__.rpartition('.')[0]}.{method.__name__}"
    return method


class Operations:
    def __init__(self, thread: LoopThread, book: Book):
        self.thread = thread
        self.book = book
        self.lock = asyncio.Lock()
        self.op: Operation | None = None
        self.closing = False  # close() began: queued and new operations are refused
        self.closed = False
        self.prepared: PreparedReload | None = None
        self.background: set[asyncio.Future] = set()

    async def locked(self, coro: Coroutine[Any, Any, T]) -> T:
        async with self.lock:
            with self.operation(coro):
                return await coro

    async def hold(
        self, make: Callable[[], Coroutine[Any, Any, Transaction]], timeout: float | None
    ) -> PreparedReload:
        """Take the lock, prepare ``make()``'s transaction, keep the lock: a PreparedReload."""
        await self.lock.acquire()
        try:
            with self.operation(coro := make()) as op:
                txn = await coro
                await txn.prepare(op)
        except BaseException:
            self.lock.release()
            raise
        self.prepared = PreparedReload(self, txn, timeout)
        return self.prepared

    @contextlib.contextmanager
    def operation(self, coro: Coroutine[Any, Any, Any] | None) -> Iterator[Operation]:
        """The operation holding the lock for the block, which interrupts reach. A new one
        (``coro``) is refused once closing: closed, never begun, KernelClosedError."""
        if coro is not None and self.closing:
            coro.close()
            raise KernelClosedError("The kernel is closing; create a new Kernel().")
        self.op = op = Operation(asyncio.current_task())
        try:
            yield op
        finally:
            if self.op is op:
                self.op = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait here; its result or error masked."""
        self.thread.refuse_in_loop(coro)
        self._check_open(coro)
        interrupted: list[Submission] = []

        def on_interrupt(submission: Submission) -> None:
            interrupted.append(submission)
            self._interrupt(submission)

        try:
            return self.thread.run(self._inside(coro), on_interrupt, self._discard)
        except KeyboardInterrupt:
            ended = _how_it_ended(interrupted[0]) if interrupted else None
            if ended is None:
                raise
            raise self.book.secrets.mask(ended) from None

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the loop from any loop; its result or error masked (once: an
        operation nested in another's coroutine is only awaited)."""
        if _INSIDE.get() and self.thread.in_loop():
            return await coro
        self._check_open(coro)
        return await self.thread.arun(self._inside(coro), self._interrupt, self._discard)

    async def _inside(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro`` as an operation's outermost coroutine: what it returns or raises masked."""
        token = _INSIDE.set(True)
        try:
            return self.book.secrets.mask(await coro)
        except BaseException as exc:
            self.book.secrets.mask(exc)
            raise
        finally:
            _INSIDE.reset(token)

    def _check_open(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self.closed or not self.thread.running:
            coro.close()
            raise KernelClosedError("The kernel is closed; create a new Kernel().")

    def _interrupt(self, submission: Submission) -> None:
        """On the loop: the caller of ``submission`` was interrupted (KeyboardInterrupt, cancel)."""
        op, task = self.op, submission.task
        if op is not None and task is not None and op.task is task:
            if not op.interrupted:
                op.interrupted = True
                op.hurry.set()
                detail = "caller interrupted: rolling back, or finishing after the swap"
                self.book.emit("interrupted", "kernel", detail=detail)
        elif task is None:  # not begun: it never will
            submission.future.cancel()
        elif not task.done():
            task.cancel()  # queued for the lock, or only reading: nothing half-done
            detail = "caller interrupted: given up, unchanged"
            self.book.emit("interrupted", "kernel", detail=detail)

    def interrupt_close(self, submission: Submission) -> None:
        """On the loop: an interrupt of ``close()`` changes nothing; it stops everything."""
        self.book.emit("interrupted", "kernel", detail="caller interrupted: closing goes on")

    def _discard(self, result: Any) -> None:
        """On the loop: a result its interrupted caller never received."""
        if isinstance(result, PreparedReload) and result.state == "prepared":
            self.keep(result._finish("abort"))

    def keep(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the loop in the background; close() waits for it."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


class PreparedReload:
    """A change prepared up to its swap (:meth:`Kernel.prepare`): the new instances run
    aside and the kernel's operation lock is held until :meth:`commit` or :meth:`abort`, or
    until ``timeout`` aborts it. As a context manager, leaving without a commit aborts."""

    def __init__(self, ops: Operations, transaction: Transaction, timeout: float | None):
        self._ops = ops
        self._txn = transaction
        self.timeout = timeout
        self.expired = False
        loop = ops.thread.loop
        self._timer = loop.call_later(timeout, self._expire) if timeout is not None else None

    @property
    def order(self) -> list[str]:
        """The running plugins it restarts, dependencies first."""
        return list(self._txn.report.order)

    @property
    def report(self) -> ReloadReport:
        """The report so far (complete once committed or aborted)."""
        return self._txn.report

    @property
    def state(self) -> str:
        """``prepared``, ``committed`` or ``aborted``."""
        return self._txn.state

    def _expire(self) -> None:
        if self._txn.state == "prepared":
            self.expired = True
            self._ops.keep(self._finish("abort"))

    async def _finish(self, how: str) -> ReloadReport:
        """Commit or abort on the kernel's loop, then release the operation lock."""
        txn, ops = self._txn, self._ops
        if txn.state != "prepared":
            why = " (its timeout expired)" if self.expired else ""
            message = f"Cannot {how} this prepared reload: it is already {txn.state}{why}."
            raise ReloadError(
                (txn.report.targets or ["kernel"])[0], how, message, report=txn.report
            )
        if self._timer is not None:
            self._timer.cancel()
        expired = f"not committed within {self.timeout:g}s" if self.expired else ""
        try:  # an operation even once closing: it ends the one holding the lock
            with ops.operation(None) as op:
                reason = expired or "aborted by the caller"
                report = await (txn.commit(op) if how == "commit" else txn.abort(op, reason))
        finally:
            ops.prepared = None
            ops.lock.release()
        if expired:
            ops.book.emit("rolled_back", "kernel", detail=f"prepared reload {expired}")
        return report

    async def acommit(self) -> ReloadReport:
        """Swap the prepared generation in, drain and stop the old one; the ReloadReport."""
        return await self._ops.arun(self._finish("commit"))

    async def aabort(self) -> ReloadReport:
        """Stop the new instances; the old set keeps serving. The (rolled back) ReloadReport."""
        return await self._ops.arun(self._finish("abort"))

    commit: Callable[[], ReloadReport] = blocking(acommit)
    abort: Callable[[], ReloadReport] = blocking(aabort)

    def __enter__(self) -> PreparedReload:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._txn.state == "prepared":
            with contextlib.suppress(KernelClosedError):
                self.abort()

    async def __aenter__(self) -> PreparedReload:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._txn.state == "prepared":
            await self.aabort()

    def __repr__(self) -> str:
        return f"<PreparedReload {self.state}: {', '.join(self.order) or 'nothing to restart'}>"


def _how_it_ended(submission: Submission) -> ReloadInterrupted | None:
    """The one-line interrupt of a reload that ended after its caller pressed interrupt;
    None if there is nothing more to say (not begun, a load or close, still running)."""
    future = submission.future
    if not future.done() or future.cancelled():
        return None
    error = future.exception()
    if isinstance(error, ReloadError) and error.report is not None and error.report.rolled_back:
        targets = ", ".join(error.report.targets) or error.plugin
        message = f"Reload of {targets} interrupted: rolled back, the old versions keep serving."
        return ReloadInterrupted(message, rolled_back=True, report=error.report)
    result = future.result() if error is None else None
    if isinstance(result, ReloadReport) and result.order:
        names = ", ".join(result.targets)
        message = f"Reload of {names} interrupted after its swap: finished, the new versions serve."
        return ReloadInterrupted(message, rolled_back=False, report=result)
    return None
