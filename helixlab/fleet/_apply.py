"""One worker's part of a fleet reload: prepare a generation aside, then commit or abort.

This is the kernel's own reload transaction split at its swap (``_reload.prepare``,
``commit``, ``abort``), run under the kernel's operation lock for its whole length, so
nothing else changes the kernel between the vote and the decision. The decision comes
from another thread (the worker's Redis loop) as a ``concurrent.futures.Future``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError, HelixError, PluginError, describe
from ..kernel import _reload
from ..kernel._config import parse_config
from ._generation import Generation

__all__ = ["Vote", "run_transaction"]


@dataclass(frozen=True)
class Vote:
    """A worker's answer to a proposed generation: ready, or failed in a plugin and phase."""

    ok: bool
    plugin: str | None = None
    phase: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "plugin": self.plugin, "phase": self.phase, "error": self.error}


def _same(a: Any, b: Any) -> bool:
    keys = ("enabled", "priority", "depends_on", "config")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _proposal(kernel: Any, generation: Generation) -> tuple[Any, list[str]]:
    """The registry the generation asks for, and the plugins whose settings it changes."""
    action = generation.action
    kind = action.get("kind")
    registry = kernel._registry
    if kind == "reload":
        return registry, [action["plugin"]]
    if kind == "configure":
        name = action["plugin"]
        entry = registry[name]
        spec = replace(
            entry.spec,
            config={**entry.spec.config, **action["values"]},
            source="fleet configure",
            line=None,
            lines={},
        )
        return registry.with_spec(spec), [name]
    if kind == "apply":
        doc = parse_config(generation.config, source=generation.source)
        unknown = [n for n in doc.plugins if n not in registry]
        if unknown:
            raise ConfigError(
                f"{generation.source}: {', '.join(map(repr, unknown))} not running in this "
                f"fleet; a fleet reload changes settings, adding a plugin needs a restart."
            )
        changed = [n for n, spec in doc.plugins.items() if not _same(spec, registry[n].spec)]
        for name in changed:
            registry = registry.with_spec(doc.plugins[name])
        return registry, changed
    raise ValueError(f"unknown fleet action {kind!r}")


def _failure(exc: BaseException, plugin: str | None) -> Vote:
    if isinstance(exc, PluginError):
        return Vote(False, exc.plugin, exc.phase, str(exc))
    if isinstance(exc, ConfigError):
        return Vote(False, plugin, "config", str(exc))
    return Vote(False, plugin, "validate", describe(exc))


async def run_transaction(
    kernel: Any,
    generation: Generation,
    vote: concurrent.futures.Future,
    decision: concurrent.futures.Future,
) -> bool:
    """On the kernel's loop: prepare, set ``vote``, await ``decision``, commit or abort.

    Returns True when the generation was committed here. Runs under the operation lock.
    """
    async with kernel._op_lock:
        plugin = generation.action.get("plugin")
        try:
            registry, names = _proposal(kernel, generation)
            for name in names:
                registry[name]  # an unknown name: PluginNotFoundError, listing the known ones
            running = [n for n in names if n in kernel._pool.current.live]
            if generation.action.get("kind") == "reload":
                running = names  # as a single reload does: a stopped plugin is loaded
            prepared = None
            if running:
                prepared = await _reload.prepare(
                    kernel, _reload.plan(kernel, running, registry=registry)
                )
        except (HelixError, KeyError, ValueError) as exc:
            vote.set_result(_failure(exc, plugin))
            return False
        except BaseException as exc:  # SystemExit, cancellation: no vote, then stop
            vote.set_result(_failure(exc, plugin))
            raise
        vote.set_result(Vote(True))
        try:
            outcome = await asyncio.wrap_future(decision)
        except BaseException:
            outcome = "abort"
        if outcome != "commit":
            if prepared is not None:
                await _reload.abort(
                    kernel,
                    prepared,
                    PluginError(
                        prepared.plan.targets[0],
                        "fleet",
                        f"generation {generation.number} was aborted by the fleet",
                    ),
                )
            return False
        if prepared is not None:
            await _reload.commit(kernel, prepared)
        else:
            kernel._registry = registry
        if generation.action.get("kind") in ("configure", "apply"):
            for name in names:
                kernel._emit("configured", name, detail=f"fleet generation {generation.number}")
        return True
