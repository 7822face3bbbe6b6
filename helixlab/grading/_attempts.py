"""Attempts a submission makes on what it must not touch, seen through Linux inotify.

The grader watches, while kernels run, the hidden checks (opened or read) and the
reports it will write (created, written, moved, deleted): the real paths without the
sandbox, the decoys that cover them with it (where the attempt lands on a stand-in).
Each event is blamed on the submissions running when it was read; with one kernel at a
time (``--jobs 1``) or with the sandbox (one decoy per kernel), that is exactly one.
Without inotify (not Linux) nothing is watched, and the report says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._isolation import Cover, KernelPlace

__all__ = ["READ", "WRITE", "Attempts", "Watcher"]

_ACCESS, _MODIFY, _ATTRIB, _CLOSE_WRITE, _OPEN = 0x1, 0x2, 0x4, 0x8, 0x20
_MOVED_FROM, _MOVED_TO, _CREATE, _DELETE = 0x40, 0x80, 0x100, 0x200
READ = _ACCESS | _OPEN
WRITE = _MODIFY | _ATTRIB | _CLOSE_WRITE | _MOVED_FROM | _MOVED_TO | _CREATE | _DELETE
_HEADER = struct.Struct("iIII")


@dataclass(frozen=True)
class _Watch:
    what: str  # "read the hidden checks", "wrote to the reports"
    folder: Path
    names: frozenset[str] | None  # only these entries of the folder (None: all)
    owner: str | None  # the submission whose decoy it is (None: whoever runs)


class Watcher:
    """inotify watches on folders; ``read`` returns what happened since, as sentences."""

    def __init__(self) -> None:
        self._fd = -1
        self._watches: dict[int, _Watch] = {}
        libc_name = ctypes.util.find_library("c")
        try:
            self._libc = ctypes.CDLL(libc_name, use_errno=True)
            self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            self._fd = -1

    @property
    def works(self) -> bool:
        return self._fd >= 0

    def watch(
        self,
        folder: Path,
        mask: int,
        what: str,
        names: frozenset[str] | None = None,
        owner: str | None = None,
    ) -> int | None:
        """Watch ``folder`` (entries ``names`` only, or all) for ``mask``; its watch id."""
        if not self.works or not folder.is_dir():
            return None
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), mask)
        if wd < 0:
            return None
        self._watches[wd] = _Watch(what, folder, names, owner)
        return wd

    def forget(self, wd: int | None) -> None:
        if wd is not None and self._watches.pop(wd, None) is not None:
            self._libc.inotify_rm_watch(self._fd, wd)

    def read(self) -> list[tuple[str | None, str]]:
        """``(owner, "read the hidden checks (lab1_extra.py)")`` for each event since last time."""
        found: list[tuple[str | None, str]] = []
        while self.works and select.select([self._fd], [], [], 0)[0]:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _, size = _HEADER.unpack_from(data, offset)
                raw = data[offset + _HEADER.size : offset + _HEADER.size + size]
                offset += _HEADER.size + size
                watch = self._watches.get(wd)
                if watch is None or not mask & (READ | WRITE):
                    continue
                name = raw.rstrip(b"\0").decode(errors="replace")
                if watch.names is not None and name not in watch.names:
                    continue
                shown = name or watch.folder.name
                sentence = f"{watch.what} ({shown})"
                if (watch.owner, sentence) not in found:
                    found.append((watch.owner, sentence))
        return found

    def close(self) -> None:
        if self.works:
            os.close(self._fd)
            self._fd = -1


class Attempts:
    """The attempts of a grading run, per submission: ``begin``, then ``end`` gives its own.

    Without the sandbox the real paths are watched, and an event is blamed on every
    submission running when it is read (``pump``, often); with it, each kernel's decoys
    are watched, and blamed on that kernel's submission alone.
    """

    def __init__(self, covered: Sequence[Cover], sandbox: bool) -> None:
        self.watcher = Watcher()
        self.sandbox = sandbox
        self.running: list[str] = []
        self.seen: dict[str, list[str]] = {}
        self._decoys: dict[str, list[int | None]] = {}
        if not sandbox:
            for cover in covered:
                self._watch(cover.folder, cover, None)

    def _watch(self, folder: Path, cover: Cover, owner: str | None) -> int | None:
        names = frozenset(cover.names) if cover.writable else None
        mask = WRITE if cover.writable else READ
        return self.watcher.watch(folder, mask, cover.what, names, owner)

    def begin(self, label: str, place: KernelPlace) -> None:
        self.pump()
        self.running.append(label)
        self.seen.setdefault(label, [])
        self._decoys[label] = [self._watch(decoy, cover, label) for decoy, cover in place.decoys]

    def end(self, label: str) -> list[str]:
        """What ``label`` attempted (or, without the sandbox, one running beside it)."""
        self.pump()
        for wd in self._decoys.pop(label, []):
            self.watcher.forget(wd)
        self.running.remove(label)
        return self.seen.pop(label, [])

    def pump(self) -> None:
        for owner, sentence in self.watcher.read():
            blamed = [owner] if owner is not None else list(self.running)
            for label in blamed:
                others = [other for other in blamed if other != label]
                told = sentence + (
                    f" — by this submission or by {', '.join(others)}, graded at the same time"
                    if others
                    else ""
                )
                if label in self.seen and told not in self.seen[label]:
                    self.seen[label].append(told)

    def close(self) -> None:
        self.watcher.close()
