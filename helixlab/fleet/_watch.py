"""Saved files become fleet reloads: the supervisor's watch on its config file (an
``apply`` generation) and its plugins directory (a ``define`` generation per saved unit).

Every save is proposed, even one identical to a refused one. A proposal that failed for
any reason but its content (Redis down, the lock busy, a worker restarting or silent) is
proposed again after :data:`RETRY_BACKOFF`, until it commits or the file is saved again;
a refusal by a worker's plugin or config is not retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FleetError
from ..kernel import Change

__all__ = ["RETRY_BACKOFF", "Propose", "SaveWatcher"]

#: A watched save whose proposal failed (Redis, the lock, a worker restarting) is proposed
#: again after these delays (the last one repeating) until it commits or is saved again.
RETRY_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)

#: ``propose(change, path, **content)``: the failure, or None once committed.
Propose = Callable[..., "Exception | None"]


def _refused_by_content(exc: BaseException) -> bool:
    """A rollback a worker chose (a plugin or the config refused the content): proposing the
    same content again would be refused again. Anything else (Redis, the lock, a worker
    gone or silent) is worth a retry."""
    if not isinstance(exc, FleetError) or exc.report is None:
        return False
    # a worker that left, did not answer, was busy draining or on another generation votes
    # failed with no plugin in phase "prepare"; a refusal names a plugin or another phase
    return any(
        not vote.get("ok") and (vote.get("plugin") or vote.get("phase") != "prepare")
        for vote in exc.report.votes.values()
    )


@dataclass
class _Pending:
    """A saved change waiting to be proposed (again)."""

    change: Change
    path: Path
    content: dict[str, Any]
    attempts: int = 0
    due: float = field(default=0.0)


class SaveWatcher:
    """Watches ``config`` and the ``plugins`` directory until ``stopping``; sets
    ``watching`` once it runs. ``say`` logs a line."""

    def __init__(
        self,
        config: Path,
        plugins: Path | None,
        propose: Propose,
        say: Callable[[str], None],
        stopping: threading.Event,
        watching: threading.Event,
    ):
        self.config, self.plugins = config, plugins
        self.propose, self.say = propose, say
        self.stopping, self.watching = stopping, watching
        self._pending: dict[str, _Pending] = {}  # saves not yet committed, by file

    def run(self) -> None:
        import watchfiles

        config, plugins = self.config, self.plugins
        roots = {config.parent, *([plugins] if plugins else [])}
        if plugins is not None and plugins.is_relative_to(config.parent):
            roots = {config.parent}  # one watch covers both

        def wanted(_: Any, changed: str) -> bool:
            path = Path(changed)
            return path == config or (
                plugins is not None and path.suffix == ".py" and path.is_relative_to(plugins)
            )

        changes = watchfiles.watch(
            *sorted(roots),  # directories: editors replace files rather than write them
            watch_filter=wanted,
            stop_event=self.stopping,
            debounce=200,
            rust_timeout=300,
            yield_on_timeout=True,
        )
        for batch in changes:
            if not batch:  # a quiet period: the watcher is running
                self.watching.set()
            else:
                changed = {Path(p) for _, p in batch}
                if config in changed:
                    self._config_saved()
                if plugins is not None:
                    self._plugins_saved(plugins, changed - {config})
            self._propose_due()

    def _config_saved(self) -> None:
        try:
            text = self.config.read_text(encoding="utf-8")
        except OSError:
            return
        change = Change.apply_config(text, source=str(self.config))
        self._queue("config", change, self.config)

    def _plugins_saved(self, plugins: Path, changed: set[Path]) -> None:
        from ..sources import unit_for
        from ._generation import read_sources

        units = {u.root: u for p in changed if (u := unit_for(plugins, p)) and u.path.exists()}
        for unit in units.values():  # one generation per saved unit
            change = Change.define_file(plugins, unit.path, source=str(unit.path))
            try:
                sources = read_sources(plugins)
            except (OSError, UnicodeDecodeError, FleetError) as exc:  # the watcher goes on
                self.say(f"fleet reload from {unit.path} failed: {exc}")
                continue
            self._queue(f"define {unit.root}", change, unit.path, sources=sources)

    def _queue(self, key: str, change: Change, path: Path, **content: Any) -> None:
        """A save: propose it now, replacing whatever of the same file waited for a retry."""
        self._pending.pop(key, None)
        self._pending[key] = _Pending(change, path, content)

    def _propose_due(self) -> None:
        """Propose every queued save whose time has come; keep the ones worth a retry."""
        now = time.monotonic()
        for key, pending in list(self._pending.items()):
            if pending.due > now or self.stopping.is_set():
                continue
            failure = self.propose(pending.change, pending.path, **pending.content)
            if failure is None or _refused_by_content(failure):
                self._pending.pop(key, None)  # committed, or refused: wait for the next save
                continue
            delay = RETRY_BACKOFF[min(pending.attempts, len(RETRY_BACKOFF) - 1)]
            pending.attempts += 1
            pending.due = time.monotonic() + delay
            self.say(f"fleet reload from {pending.path}: retrying in {delay:g}s")
