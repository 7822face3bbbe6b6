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
from typing import Any

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
    """Stands for ``sys.stdout`` / ``sys.stderr`` while live runs are in progress: the
    notebook's own (main) thread writes through, other threads' writes are dropped."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        if _Foreground.depth or threading.current_thread() is threading.main_thread():
            return self._stream.write(text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class muffled_threads:
    """Install the muffles for the duration of a run (nested runs share them)."""

    _lock = threading.Lock()
    _depth = 0
    _saved: tuple[Any, Any] | None = None

    def __enter__(self) -> None:
        cls = type(self)
        with cls._lock:
            if cls._depth == 0:
                cls._saved = (sys.stdout, sys.stderr)
                sys.stdout, sys.stderr = _Muffle(sys.stdout), _Muffle(sys.stderr)
            cls._depth += 1

    def __exit__(self, *exc: object) -> None:
        cls = type(self)
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0 and cls._saved is not None:
                # only undo what is still ours: a cell may have redirected since
                if isinstance(sys.stdout, _Muffle):
                    sys.stdout = cls._saved[0]
                if isinstance(sys.stderr, _Muffle):
                    sys.stderr = cls._saved[1]
                cls._saved = None
