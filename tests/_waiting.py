"""Waiting for a condition in a test: looked at often, bounded in time, clear when it fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    *,
    holds: Callable[[T], Any] = bool,
) -> T:
    """Call ``condition`` until ``holds`` its value (truthy, by default); return that value.

    Looked at every 10 ms at first, then every 100 ms. After ``timeout`` seconds the test
    fails with ``what`` and the last value seen. An exception from ``condition`` is not
    caught: it fails the test at once.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = condition()
        if holds(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            shown = repr(value)
            shown = shown if len(shown) <= 2000 else shown[:2000] + "..."
            raise AssertionError(f"{what}: not within {timeout:g}s; last seen: {shown}")
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.1)
