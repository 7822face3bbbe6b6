"""Plugin events: a bounded log, subscriber callbacks and the seed's ``Watch()`` iterator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import NamedTuple

from .._reprs import html_of

__all__ = ["EventLog", "PluginEvent"]

log = logging.getLogger("helixlab.events")


class PluginEvent(NamedTuple):
    """One transition of one plugin (``time``: wall-clock seconds, left out of repr).

    Kinds, in the order a plugin usually meets them: registered, configured, initialized,
    started, reloading, reloaded (or reload_failed and rolled_back), health_changed,
    stopping, stopped, unloaded, unregistered; and failed, skipped, file_error.
    """

    seq: int
    kind: str
    plugin: str
    version: str = ""
    detail: str = ""
    error: str | None = None
    time: float = 0.0

    def __str__(self) -> str:
        who = f"{self.plugin} {self.version}".strip()
        detail = f": {self.detail}" if self.detail else ""
        error = f" ({self.error})" if self.error else ""
        return f"#{self.seq} {self.kind:<13} {who}{detail}{error}"

    def __repr__(self) -> str:
        return f"PluginEvent({self})"

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's plain-text display
        p.text(str(self))

    def _repr_html_(self) -> str | None:
        return html_of(self)  # registered by the notebook layer


class EventLog:
    """The last ``maxlen`` events, each new one fanned out to subscribers and watchers; safe
    from any thread, a subscriber's exception logged, never raised into the emitting code."""

    def __init__(self, maxlen: int = 1000):
        self._events: deque[PluginEvent] = deque(maxlen=maxlen)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._subscribers: tuple[Callable[[PluginEvent], object], ...] = ()  # replaced, not changed

    @property
    def maxlen(self) -> int:
        return self._events.maxlen or 0

    def emit(
        self, kind: str, plugin: str, version: str = "", detail: str = "", error: str | None = None
    ) -> PluginEvent:
        now = time.time()
        with self._lock:
            event = PluginEvent(next(self._seq), kind, plugin, version, detail, error, now)
            self._events.append(event)
            subscribers = self._subscribers
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", callback, event)
        return event

    def events(self, plugin: str | None = None, limit: int | None = None) -> list[PluginEvent]:
        """Recent events, oldest first, optionally only one plugin's, at most ``limit``."""
        with self._lock:
            events = list(self._events)
        if plugin is not None:
            events = [e for e in events if e.plugin == plugin]
        if limit is not None:
            events = events[-limit:] if limit > 0 else []
        return events

    def subscribe(self, callback: Callable[[PluginEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for each new event; returns the function that unsubscribes."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    rest = list(self._subscribers)
                    rest.remove(callback)
                    self._subscribers = tuple(rest)

        return unsubscribe

    def watch(self, timeout: float | None = None) -> Iterator[PluginEvent]:
        """Block for each new event (the seed's ``Watch()``), subscribed from this call on;
        ends after ``timeout`` idle seconds (None: never) or on ``close()``."""
        return _Watch(self, timeout)

    async def awatch(self) -> AsyncIterator[PluginEvent]:
        """Async twin of :meth:`watch`, for the caller's running loop."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[PluginEvent] = asyncio.Queue()
        unsubscribe = self.subscribe(
            lambda event: loop.call_soon_threadsafe(inbox.put_nowait, event)
        )
        try:
            while True:
                yield await inbox.get()
        finally:
            unsubscribe()


class _Watch(Iterator[PluginEvent], contextlib.AbstractContextManager):
    """The iterator :meth:`EventLog.watch` returns; a context manager that unsubscribes."""

    def __init__(self, log: EventLog, timeout: float | None):
        self._inbox: queue.SimpleQueue[PluginEvent] = queue.SimpleQueue()
        self._timeout = timeout
        self._unsubscribe: Callable[[], None] | None = log.subscribe(self._inbox.put)

    def __next__(self) -> PluginEvent:
        if self._unsubscribe is None:
            raise StopIteration
        try:
            return self._inbox.get(timeout=self._timeout)
        except queue.Empty:
            self.close()
            raise StopIteration from None

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def __exit__(self, *exc: object) -> None:
        self.close()

    __del__ = close
