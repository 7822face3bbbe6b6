"""Output from background threads, kept out of the notebook's cells while they work.

Output printed by a thread lands in whichever cell happens to be running. A live check
panel's runs and a dashboard's health looks call the learner's plugin code on worker
threads (and the checks' private kernels run it on theirs); while they do, writes from
any thread but the notebook's own (main) thread are dropped — except while a cell's own
kernel operation collects what its plugins print (``foreground``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

__all__ = ["foreground", "muffled_threads"]


class _Foreground:
    """How many cells are in a kernel operation whose plugins' output they collect."""

    depth = 0
    lock = threading.Lock()


@contextlib.contextmanager
def foreground() -> Iterator[None]:
    """A cell's own kernel operation: every thread's output is the cell's meanwhile (the
    plugins it runs print from the kernel's threads), muffled or not."""
    with _Foreground.lock:
        _Foreground.depth += 1
    try:
        yield
    finally:
        with _Foreground.lock:
            _Foreground.depth -= 1


class _Muffle:
    """Stands for ``sys.stdout`` / ``sys.stderr``: while live runs are in progress
    (``depth``), the notebook's own (main) thread writes through, other threads' writes
    are dropped."""

    depth = 0
    lock = threading.Lock()

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        if (
            not _Muffle.depth
            or _Foreground.depth
            or threading.current_thread() is threading.main_thread()
        ):
            return self._stream.write(text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class muffled_threads:
    """Muffle other threads' output for the duration of a run (nested runs share it).

    The muffles go into ``sys.stdout`` / ``sys.stderr`` once and stay: outside a run they
    write through. Swapping the streams back from a worker thread would free the muffle
    while the main thread may be inside ``print()``, which on CPython before 3.12 holds
    ``sys.stdout`` by a borrowed reference: a use-after-free that crashed the kernel.
    For the same reason every muffle, and whatever it displaced, is kept alive.
    """

    _kept: ClassVar[list[Any]] = []

    def __enter__(self) -> None:
        with _Muffle.lock:
            _Muffle.depth += 1
            for name in ("stdout", "stderr"):
                current = getattr(sys, name)
                if not isinstance(current, _Muffle):  # first run, or a cell redirected since
                    muffle = _Muffle(current)
                    type(self)._kept.extend((current, muffle))
                    setattr(sys, name, muffle)

    def __exit__(self, *exc: object) -> None:
        with _Muffle.lock:
            _Muffle.depth -= 1
