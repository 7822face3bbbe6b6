"""Running one lifecycle phase of one instance: plain or async, under a timeout.

Plain methods run in a worker thread, so a plugin that blocks cannot freeze the kernel's
loop; async methods run on the loop. Either way a timeout turns a hang into a
:class:`PluginTimeoutError` naming the plugin and the phase. A plain method that never
returns keeps its worker thread until it does: Python cannot kill a thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import PluginError, PluginTimeoutError
from ._plugin import Context, Plugin

__all__ = ["Live", "Timeouts", "call_phase", "overrides"]

#: phase name → the Plugin method it calls
PHASES = {
    "init": "init",
    "start": "start",
    "stop": "stop",
    "health": "health_check",
    "export_state": "export_state",
    "import_state": "import_state",
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds each phase may take before it counts as hung."""

    init: float = 10.0
    start: float = 10.0
    stop: float = 10.0
    health: float = 2.0
    export_state: float = 5.0
    import_state: float = 5.0
    drain: float = 30.0


@dataclass
class Live:
    """A running instance with what it was created from."""

    plugin: Plugin
    ctx: Context
    config: Any
    requires: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def version(self) -> str:
        return self.ctx.version


def overrides(plugin: Plugin, method: str) -> bool:
    """Whether the plugin's class defines ``method`` itself (the base ones do nothing)."""
    return getattr(type(plugin), method) is not getattr(Plugin, method)


async def call_phase(live: Live, phase: str, *args: Any, timeout: float) -> Any:
    """Call the phase's method on ``live.plugin``; errors become PluginError(plugin, phase)."""
    plugin = live.plugin
    method_name = PHASES[phase]
    if not overrides(plugin, method_name):
        return None
    method = getattr(plugin, method_name)
    try:
        if inspect.iscoroutinefunction(method):
            result = await asyncio.wait_for(method(*args), timeout)
        else:
            result = await asyncio.wait_for(asyncio.to_thread(method, *args), timeout)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout)
        return result
    except TimeoutError:
        raise PluginTimeoutError(
            live.name,
            phase,
            f"Plugin {live.name!r} {live.version} did not finish {phase} within {timeout:g}s.",
            cause=TimeoutError(f"no answer within {timeout:g}s"),  # what reports show
            version=live.version,
        ) from None
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(live.name, phase, cause=exc, version=live.version) from exc
