"""The plugin kernel: plugin model, registry, graph, config, events, reload, watcher."""

from ._change import Change
from ._config import ConfigDocument, parse_config
from ._discovery import unit_for
from ._events import EventLog, PluginEvent
from ._fingerprint import Fingerprint, Reach, reaches
from ._graph import DependencyGraph
from ._imports import IMPORT_TIMEOUT
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
from ._reports import Degraded, HealthStatus, LoadReport, PluginInfo, ReloadReport
from ._secrets import redact
from ._transaction import PreparedReload
from ._validation import Duration, PluginConfig, parse_duration
from ._watcher import FileWatcher

__all__ = [
    "IMPORT_TIMEOUT",
    "LOOPS",
    "ASGIApp",
    "Change",
    "ConfigDocument",
    "Context",
    "Degraded",
    "DependencyGraph",
    "Duration",
    "EventLog",
    "FileWatcher",
    "Fingerprint",
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
    "Reach",
    "ReloadReport",
    "Timeouts",
    "ToolPlugin",
    "loop_factory",
    "parse_config",
    "parse_duration",
    "reaches",
    "redact",
    "unit_for",
]
