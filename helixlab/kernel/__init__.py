"""The plugin kernel: plugin model, registry, graph, config, events, reload, watcher."""

from ._events import EventLog, PluginEvent
from ._graph import DependencyGraph
from ._kernel import Kernel
from ._lifecycle import Timeouts
from ._live import Lease
from ._loop import LOOPS, loop_factory
from ._plugin import (
    ASGIApp,
    Context,
    MiddlewareFactory,
    MiddlewarePlugin,
    Plugin,
    PluginState,
    Probe,
    ProviderPlugin,
    ToolPlugin,
)
from ._reports import HealthStatus, LoadReport, PluginInfo, ReloadReport
from ._secrets import redact
from ._transaction import PreparedReload
from ._validation import Duration, PluginConfig, parse_duration
from ._watcher import FileWatcher

__all__ = [
    "LOOPS",
    "ASGIApp",
    "Context",
    "DependencyGraph",
    "Duration",
    "EventLog",
    "FileWatcher",
    "HealthStatus",
    "Kernel",
    "Lease",
    "LoadReport",
    "MiddlewareFactory",
    "MiddlewarePlugin",
    "Plugin",
    "PluginConfig",
    "PluginEvent",
    "PluginInfo",
    "PluginState",
    "PreparedReload",
    "Probe",
    "ProviderPlugin",
    "ReloadReport",
    "Timeouts",
    "ToolPlugin",
    "loop_factory",
    "parse_duration",
    "redact",
]
