"""One worker's part of a fleet reload on its kernel: prepare a generation's change aside,
then commit or abort it as the fleet decides.

This is the kernel's own transaction split at its swap (``Kernel.aprepare_reload``,
``aprepare_configure``, ``aprepare_apply_config`` -> ``PreparedReload.acommit`` /
``aabort``): the new instances run aside and the kernel holds its operation lock until
the fleet's decision arrives, so nothing else changes this worker in between.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PluginError, describe
from ..kernel import import_unit, unit_for
from ._generation import Generation, write_sources

__all__ = ["Vote", "commit", "prepare", "vote_for"]


@dataclass(frozen=True)
class Vote:
    """A worker's answer to a proposed generation: ready, or failed in a plugin and phase."""

    ok: bool
    plugin: str | None = None
    phase: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "plugin": self.plugin, "phase": self.phase, "error": self.error}


async def prepare(kernel: Any, generation: Generation, plugins: Path) -> Any:
    """Start ``generation``'s change aside on ``kernel``: a PreparedReload, or an error.

    ``plugins`` is this worker's copy of the fleet's plugins directory. No timeout of its
    own: the worker bounds the wait for the decision and then aborts.
    """
    action = generation.action
    kind = action.get("kind")
    if kind == "define":
        return await _prepare_define(kernel, generation, plugins)
    if kind == "reload":
        return await kernel.aprepare_reload(action["plugin"], timeout=None)
    if kind == "configure":
        return await kernel.aprepare_configure(action["plugin"], action["values"], timeout=None)
    if kind == "apply":
        return await kernel.aprepare_apply_config(
            generation.config, source=generation.source, timeout=None
        )
    raise ValueError(f"unknown fleet action {kind!r} in generation {generation.number}")


async def _prepare_define(kernel: Any, generation: Generation, plugins: Path) -> Any:
    """A saved plugin file: its unit re-imported from the generation's sources, then define."""
    rel = generation.action["path"]
    await asyncio.to_thread(write_sources, plugins, generation.sources)
    unit = unit_for(plugins, plugins / rel)
    if unit is None:
        raise ValueError(f"{rel!r} is not plugin code in the fleet's plugins directory")
    sources = await asyncio.to_thread(unit.read)
    classes = await asyncio.to_thread(import_unit, unit)
    return await kernel.aprepare_define(
        classes,
        source=generation.action.get("file") or rel,
        origin="file",
        unit=str(unit.root),
        fingerprints={cls.name: sources.fingerprint(cls) for cls in classes},
        timeout=None,
    )


async def commit(kernel: Any, prepared: Any) -> tuple[asyncio.Future, float]:
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
