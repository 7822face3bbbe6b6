"""One worker's part of a fleet reload on its kernel: prepare a generation's change aside,
then commit or abort it as the fleet decides.

This is the kernel's own transaction split at its swap (``Kernel.aprepare(change)`` ->
``PreparedReload.acommit`` / ``aabort``): the new instances run aside and the kernel holds
its operation lock until the fleet's decision arrives, so nothing else changes this worker
in between.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PluginError, describe
from ..kernel import Change, Kernel, PreparedReload
from ._generation import Generation, write_sources
from ._wire import change_from_wire, change_to_wire

__all__ = ["Vote", "commit", "prepare", "subject", "vote_for"]


@dataclass(frozen=True)
class Vote:
    """A worker's answer to a proposed generation: ready, or failed in a plugin and phase."""

    ok: bool
    plugin: str | None = None
    phase: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "plugin": self.plugin, "phase": self.phase, "error": self.error}


async def prepare(kernel: Kernel, generation: Generation, plugins: Path) -> PreparedReload:
    """Start ``generation``'s change aside on ``kernel`` (``Kernel.aprepare``): a
    PreparedReload, or the error that rolled it back.

    ``plugins`` is this worker's copy of the fleet's plugins directory: a ``define_file``
    change is read there, from the generation's sources. No timeout of its own: the worker
    bounds the wait for the decision and then aborts.
    """
    change = generation.change
    if change is None:
        raise ValueError(f"generation {generation.number} founds the fleet: nothing to prepare")
    if change.kind == "define_file":
        await asyncio.to_thread(write_sources, plugins, generation.sources)
        change = change_from_wire(change_to_wire(change), directory=plugins)
    return await kernel.aprepare(change, timeout=None)


def subject(change: Change | None) -> str | None:
    """The plugin (or file) ``change`` is about, named by a failed vote that names none."""
    if change is None or change.kind == "apply_config":
        return None
    if change.kind == "configure":
        return change.plugin
    if change.kind == "reload":
        return ", ".join(map(str, change.targets))
    return change_to_wire(change)["path"]


async def commit(kernel: Kernel, prepared: PreparedReload) -> tuple[asyncio.Future, float]:
    """Commit ``prepared``, returning at the swap itself (the kernel's ``reloaded`` event)
    with when it happened, and the commit's task, which ends once the old generation
    drained: the next proposal gets a vote meanwhile (its prepare waits for the drain)."""
    loop = asyncio.get_running_loop()
    swapped = asyncio.Event()
    at: list[float] = []

    def on_event(event: Any) -> None:  # on the kernel's thread
        if event.kind == "reloaded" and not at:
            at.append(time.time())
            loop.call_soon_threadsafe(swapped.set)

    unsubscribe = kernel.subscribe(on_event)
    task = asyncio.ensure_future(prepared.acommit())
    waiter = asyncio.ensure_future(swapped.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # a commit that failed before its swap raises here
    except BaseException:
        unsubscribe()
        raise
    finally:
        waiter.cancel()
    task.add_done_callback(lambda _: unsubscribe())
    return task, at[0] if at else time.time()


def vote_for(exc: BaseException, plugin: str | None) -> Vote:
    """The failed vote that ``exc`` (raised by :func:`prepare`) amounts to."""
    if isinstance(exc, PluginError):
        return Vote(False, exc.plugin, exc.phase, str(exc))
    if isinstance(exc, ConfigError):
        return Vote(False, plugin, "config", str(exc))
    return Vote(False, plugin, "validate", describe(exc))
