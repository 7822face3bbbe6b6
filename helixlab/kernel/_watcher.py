"""Hot reload on save: each unit changed in a watchfiles batch is read once, imported from
that read (under ``import_timeout``) and defined, one transaction per unit. A unit that fails
leaves the old version serving and is reported once per content; the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING

import watchfiles

from ..errors import HelixError, PluginError, describe
from . import _discovery
from ._reports import ReloadReport
from ._workers import IMPORT_TIMEOUT

if TYPE_CHECKING:
    from ._book import Book
    from ._kernel import Kernel
    from ._loop import LoopThread

__all__ = ["FileWatcher"]


class FileWatcher:
    """A running watch on one directory until ``stop()`` or the kernel closes; ``reports``,
    ``errors``: the last ``keep`` reloads made and failures reported."""

    def __init__(
        self,
        kernel: Kernel,
        thread: LoopThread,
        book: Book,
        path: Path,
        *,
        debounce: int = 1600,
        step: int = 50,
        keep: int = 100,
        import_timeout: float = IMPORT_TIMEOUT,
    ):
        self.kernel, self.path, self.import_timeout = kernel, path.resolve(), import_timeout
        self._thread, self._book = thread, book  # the kernel's loop; its events
        if not self.path.is_dir():
            raise HelixError(f"Cannot watch {str(path)!r}: it is not a directory.")
        self.reports: list[ReloadReport] = []
        self.errors: list[HelixError] = []
        self.batches = 0  # change batches handled so far (wait with wait_for_batch)
        self._keep, self._changed, self._stop = keep, threading.Condition(), asyncio.Event()
        self._reported: dict[Path, str] = {}  # unit root -> digest whose error was reported
        changes = watchfiles.awatch(
            self.path,
            stop_event=self._stop,
            debounce=debounce,
            step=step,
            watch_filter=watchfiles.PythonFilter(),
        )
        ready = threading.Event()
        self._future = thread.submit(self._run(changes, ready)).future
        ready.wait(10)
        kernel.add_closer(self._astop)

    @property
    def running(self) -> bool:
        return not self._future.done()

    def wait_for_batch(self, after: int, timeout: float = 10.0) -> bool:
        """Block until more than ``after`` batches were handled; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.batches > after, timeout)

    async def _run(
        self,
        changes: AsyncGenerator[set[tuple[watchfiles.Change, str]], None],
        ready: threading.Event,
    ) -> None:
        pending = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0)  # the watcher's first step sets up the OS watches
        ready.set()
        try:
            with contextlib.suppress(StopAsyncIteration):  # stopped
                while True:
                    await self.handle({Path(p) for _, p in await pending})
                    pending = asyncio.ensure_future(anext(changes))
        finally:
            pending.cancel()
            await changes.aclose()

    async def handle(self, paths: set[Path]) -> None:
        """Re-import and define the units behind ``paths``; a failure is reported once per
        content of the unit (event ``file_error``)."""
        found = (_discovery.unit_for(self.path, path) for path in sorted(paths))
        for unit in {unit.root: unit for unit in found if unit is not None}.values():
            try:
                sources = await asyncio.to_thread(unit.read)
            except OSError:  # removed since the event: a change of the next batch
                continue
            try:
                classes, prints = await self.kernel.aimport_unit(
                    unit.root, unit.path, timeout=self.import_timeout, sources=sources
                )
                report = await self.kernel.adefine(
                    classes,
                    source=str(unit.path),
                    origin="file",
                    unit=str(unit.root),
                    fingerprints=prints,
                )
            except HelixError as exc:
                if self._reported.get(unit.root) != sources.digest:
                    self._reported[unit.root] = sources.digest
                    self.errors.append(exc)
                    del self.errors[: -self._keep]
                    plugin = exc.plugin if isinstance(exc, PluginError) else unit.name
                    serving = any(e.source == str(unit.path) for e in self.kernel.info())
                    state = "the running version keeps serving" if serving else "not loaded"
                    detail = f"{unit.path.name}: {state}"
                    self._book.emit("file_error", plugin, detail, describe(exc))
                continue
            self._reported.pop(unit.root, None)
            self.reports.append(report)
            del self.reports[: -self._keep]
        with self._changed:
            self.batches += 1
            self._changed.notify_all()

    async def _astop(self) -> None:
        self._stop.set()
        if not self._future.done():
            await asyncio.wrap_future(self._future)

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        self._thread.call_soon(self._stop.set)  # nothing once the loop is closed
        if not self._thread.in_loop():
            with contextlib.suppress(Exception):  # failures were reported through events
                self._future.result(timeout=10)

    def __enter__(self) -> FileWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FileWatcher {'watching' if self.running else 'stopped'} {self.path.name}/>"
