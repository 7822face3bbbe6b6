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
from typing import TYPE_CHECKING, Any

import watchfiles

from ..errors import HelixError, KernelClosedError, PluginError, describe
from ..kernel import IMPORT_TIMEOUT, ReloadReport
from ._units import import_file, unit_for

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["FileWatcher", "watch_files"]

Changes = AsyncGenerator[set[tuple[watchfiles.Change, str]], None]


def watch_files(kernel: Kernel, path: str, **options: Any) -> FileWatcher:
    """What ``Kernel.watch_files`` runs."""
    return FileWatcher(kernel, Path(path), **options)


class FileWatcher:
    """A running watch on one directory until ``stop()`` or the kernel closes; ``reports``,
    ``errors``: the last ``keep`` reloads made and failures reported."""

    def __init__(
        self,
        kernel: Kernel,
        path: Path,
        *,
        debounce: int = 1600,
        step: int = 50,
        keep: int = 100,
        import_timeout: float = IMPORT_TIMEOUT,
    ):
        self.kernel, self.path, self.import_timeout = kernel, path.resolve(), import_timeout
        if not self.path.is_dir():
            raise HelixError(f"Cannot watch {str(path)!r}: it is not a directory.")
        self.reports: list[ReloadReport] = []
        self.errors: list[HelixError] = []
        self.batches = 0  # change batches handled so far (wait with wait_for_batch)
        self._keep, self._changed = keep, threading.Condition()
        self._reported: dict[Path, str] = {}  # unit root -> digest whose error was reported
        kernel.run(self._astart(debounce, step))  # on the kernel's loop
        kernel.add_closer(self._astop)

    async def _astart(self, debounce: int, step: int) -> None:
        self._stop = asyncio.Event()
        changes = watchfiles.awatch(
            self.path,
            stop_event=self._stop,
            debounce=debounce,
            step=step,
            watch_filter=watchfiles.PythonFilter(),
        )
        pending = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0)  # the watcher's first step sets up the OS watches
        self._task = asyncio.ensure_future(self._run(changes, pending))

    @property
    def running(self) -> bool:
        return not self._task.done()

    def wait_for_batch(self, after: int, timeout: float = 10.0) -> bool:
        """Block until more than ``after`` batches were handled; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.batches > after, timeout)

    async def _run(self, changes: Changes, pending: asyncio.Future) -> None:
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
        found = (unit_for(self.path, path) for path in sorted(paths))
        for unit in {unit.root: unit for unit in found if unit is not None}.values():
            try:
                sources = await asyncio.to_thread(unit.read)
            except OSError:  # removed since the event: a change of the next batch
                continue
            try:
                classes, prints = await import_file(
                    self.kernel, unit.root, unit.path, timeout=self.import_timeout, sources=sources
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
                    self.kernel.file_error(plugin, detail, describe(exc))
                continue
            self._reported.pop(unit.root, None)
            self.reports.append(report)
            del self.reports[: -self._keep]
        with self._changed:
            self.batches += 1
            self._changed.notify_all()

    async def _astop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # failures were reported through events
            await self._task

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        try:
            self.kernel.run(self._astop(), timeout=10)
        except (KernelClosedError, TimeoutError):  # stopped by closing; still stopping
            pass
        except HelixError:  # on the kernel's loop, which cannot wait for itself
            self._stop.set()

    def __enter__(self) -> FileWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FileWatcher {'watching' if self.running else 'stopped'} {self.path.name}/>"
