"""An operator's signals, for a main thread that waits for them: none is ever lost.

CPython runs a Python signal handler in the main thread only, and only once that thread
runs Python code again. Linux delivers a process-directed signal (``kill -HUP PID``) to
any thread that does not block it: when it lands on one of the server's threads, a main
thread asleep on a lock (``queue.get()``, ``Event.wait()``) is never woken, and the
signal waits there until something else wakes it — for ever, if nothing does. (That was
the flaky ``SIGHUP: re-applying`` of ``tests/gateway/test_operators.py``.)

So the C-level handler is told to write each signal's number to a socket
(:func:`signal.set_wakeup_fd`), which it does on whatever thread it ran, and the main
thread waits on that socket. Signals that arrive while the main thread is busy (a
re-apply under way) are read together by the next :meth:`Signals.wait`: coalesced into
one later action, never dropped.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
from collections import Counter
from collections.abc import Mapping
from types import FrameType
from typing import Any

__all__ = ["Signals"]


def _noted(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: nothing to do, the number is already on the socket."""


class Signals:
    """``with Signals({SIGHUP: "reapply", SIGTERM: "stop"}) as signals: signals.wait()``.

    Install in the main thread. :meth:`wait` blocks until at least one of the signals came
    and returns how many times each action was asked for since the last call.
    """

    def __init__(self, actions: Mapping[int, str]):
        self.actions = dict(actions)
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1

    def __enter__(self) -> Signals:
        for signum in self.actions:
            self._previous[signum] = signal.signal(signum, _noted)
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._read.close()
        self._write.close()

    def wait(self, timeout: float | None = None) -> Counter[str]:
        """The actions asked for (each with how many signals asked), waiting until one is;
        an empty Counter after ``timeout`` seconds (None: no limit)."""
        found: Counter[str] = Counter()
        while not found:
            ready, _, _ = select.select([self._read], [], [], timeout)
            if not ready:
                return found
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while True:  # everything pending: signals that came meanwhile coalesce
                    data = self._read.recv(4096)
                    if not data:
                        break
                    for signum in data:
                        if signum in self.actions:
                            found[self.actions[signum]] += 1
        return found
