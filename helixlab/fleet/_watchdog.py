"""The supervisor's watchdog: what a supervisor leaves behind is cleaned when it dies.

A supervisor killed with ``kill -9`` runs no ``finally``: its private redis-server would
run for ever, with its temporary directories and the state file. So the supervisor starts
this small process (a file run by path, so it imports nothing of helixlab) with a pipe
on its standard input, and tells it, one line each::

    pid 1234      a worker: on the supervisor's death it gets SIGTERM (it drains) and
                  is waited for, then SIGKILL after the grace period
    redis 1235    the private redis-server: stopped once the workers are gone
    path /tmp/x   a directory to remove, once every process above has exited
    state /f 99   a state file, removed if it still names the supervisor's pid 99

When the pipe ends (the supervisor exited, however it did), the watchdog does all of it
and exits; after a clean stop everything is gone already and it only finds that out.
Processes are held by pidfd, so a recycled pid is never signalled. :class:`Watchdog` is
the supervisor's end of the pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE = 30.0  # seconds a worker gets to drain before SIGKILL
REDIS_GRACE = 5.0


class Watchdog:
    """The supervisor's handle on its watchdog: :meth:`tell` it a line, :meth:`end` it."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__))],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # not in the terminal's group: Ctrl-C is ours to handle
        )

    def tell(self, line: str) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            process.stdin.write(line + "\n")
            process.stdin.flush()

    def end(self) -> None:
        """After a clean stop: close its pipe (it finds nothing left to do) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:  # already gone
        return None


def _wait(fds: list[int], timeout: float) -> list[int]:
    """Wait until every pidfd in ``fds`` is readable (its process exited); the ones left."""
    deadline = time.monotonic() + timeout
    left = list(fds)
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select(left, [], [], remaining)
        left = [fd for fd in left if fd not in ready]
    return left


def _stop(fds: list[int], grace: float) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signal.SIGTERM)
    for fd in _wait(fds, grace):
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    _wait(fds, 5.0)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    workers: dict[int, int] = {}
    redis: list[int] = []
    paths: list[str] = []
    states: list[tuple[str, int]] = []
    for line in sys.stdin:
        kind, _, arg = line.rstrip("\n").partition(" ")
        if kind == "pid" and (fd := _open(int(arg))) is not None:
            workers[int(arg)] = fd
        elif kind == "exited":
            fd = workers.pop(int(arg), None)
            if fd is not None:
                os.close(fd)
        elif kind == "redis" and (fd := _open(int(arg))) is not None:
            redis.append(fd)
        elif kind == "path":
            paths.append(arg)
        elif kind == "state":
            path, _, owner = arg.rpartition(" ")
            states.append((path, int(owner)))
    # the supervisor is gone: workers first (they drain, then leave Redis), then Redis
    _stop(list(workers.values()), GRACE)
    _stop(redis, REDIS_GRACE)
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    for path, owner in states:
        with contextlib.suppress(OSError, ValueError), open(path, encoding="utf-8") as f:
            if json.load(f).get("pid") == owner:
                os.unlink(path)


if __name__ == "__main__":
    main()
