"""Repeated identical tracebacks, logged once with a count.

A middleware that raises on every request would otherwise print one full traceback per
request (thousands a minute). The first occurrence of a traceback (its exception type and
frames, not its message, which may quote the request) is logged in full; the same one
again is counted and logged as one line at the 10th, 100th, 1000th… occurrence, and once
more with its total when the server stops (``flush``).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import OrderedDict

__all__ = ["RepeatedErrors"]


class RepeatedErrors:
    """``log(message, exc)``: the traceback the first time, a count after that."""

    def __init__(self, logger: logging.Logger, keep: int = 256):
        self.logger = logger
        self._keep = keep
        self._counts: OrderedDict[tuple, int] = OrderedDict()
        self._messages: dict[tuple, str] = {}  # key -> message and exception name, for flush
        self._lock = threading.Lock()

    def count(self, exc: BaseException) -> int:
        """How many times this traceback was seen so far."""
        with self._lock:
            return self._counts.get(_key(exc), 0)

    def log(self, message: str, exc: BaseException) -> None:
        key = _key(exc)
        with self._lock:
            seen = self._counts.pop(key, 0) + 1
            self._counts[key] = seen
            self._messages[key] = f"{message}: the same {type(exc).__name__}"
            while len(self._counts) > self._keep:
                gone, _ = self._counts.popitem(last=False)
                self._messages.pop(gone, None)
        if seen == 1:
            self.logger.error(message, exc_info=exc)
        elif _milestone(seen):
            self.logger.error(
                "%s: the same %s again, %d times so far (its traceback was logged once)",
                message,
                type(exc).__name__,
                seen,
            )

    def flush(self) -> None:
        """Log the total of every repeated traceback whose last count was not logged."""
        with self._lock:
            pending = [(k, n) for k, n in self._counts.items() if n > 1 and not _milestone(n)]
            self._counts.clear()
            messages, self._messages = self._messages, {}
        for key, seen in pending:
            self.logger.error(
                "%s %d times in all (its traceback was logged once)", messages[key], seen
            )


def _key(exc: BaseException) -> tuple:
    frames = tuple((f.filename, f.lineno, f.name) for f in traceback.extract_tb(exc.__traceback__))
    return (type(exc).__module__, type(exc).__qualname__, frames)


def _milestone(n: int) -> bool:
    while n % 10 == 0:
        n //= 10
    return n == 1
