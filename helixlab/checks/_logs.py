"""What the checks' private gateways log while a check runs: kept out of the cell, summarised.

A check serves the learner's plugin on a private gateway and sends it requests; a plugin
that breaks the ASGI protocol makes the server log a full traceback per request (a dozen
screens above the report). While a check runs, records of the serving loggers are taken
aside instead of printed; a failed check's hint ends with one line per distinct error,
with its count and the learner's own line that raised it.
"""

from __future__ import annotations

import contextlib
import logging
import sysconfig
import threading
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

__all__ = ["captured", "summary"]

#: The loggers a check's private gateway and its server write to.
LOGGERS = ("helixlab.gateway", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")

_MACHINERY = (
    str(Path(__file__).resolve().parent.parent),  # helixlab
    sysconfig.get_paths()["stdlib"],
    sysconfig.get_paths()["purelib"],
    sysconfig.get_paths()["platlib"],
)


class _Taker(logging.Filter):
    """A logger filter that keeps every record (from any thread) and lets none through."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            self.records.append(record)
        return False


@contextlib.contextmanager
def captured() -> Iterator[list[logging.LogRecord]]:
    """Take the serving loggers' records aside while the block runs; the list of them."""
    taker = _Taker()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    for logger in loggers:
        logger.addFilter(taker)
    try:
        yield taker.records
    finally:
        for logger in loggers:
            logger.removeFilter(taker)


def summary(records: list[logging.LogRecord], limit: int = 3) -> str:
    """One sentence per distinct error logged (with its count): 'The checks' gateway
    logged: Error serving POST /v1/chat/completions: RuntimeError: … (6 times; raised at
    line 75 of your __call__).'"""
    counts: Counter[str] = Counter()
    for record in records:
        if record.levelno >= logging.WARNING:
            counts[_line(record)] += 1
    if not counts:
        return ""
    parts = [f"{text} ({n} times)" if n > 1 else text for text, n in counts.most_common(limit)]
    more = len(counts) - limit
    if more > 0:
        parts.append(f"and {more} other error{'s' if more > 1 else ''}")
    return f"Meanwhile the checks' gateway logged: {'; '.join(parts)}."


def _line(record: logging.LogRecord) -> str:
    message = record.getMessage().strip().splitlines()[0] if record.getMessage() else ""
    info = record.exc_info
    if not info or info[1] is None:
        return message
    exc = info[1]
    text = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {text[0].rstrip('.')}" if text else type(exc).__name__
    where = _learner_line(exc)
    return f"{message}: {what}{where}"


def _learner_line(exc: BaseException) -> str:
    """', raised from line N of your f()': the last frame of the traceback that is the
    learner's code (not helixlab, a library or the standard library)."""
    mine = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith(_MACHINERY)
    ]
    if not mine:
        return ""
    last = mine[-1]
    return f", raised from line {last.lineno} of your {last.name}()"
