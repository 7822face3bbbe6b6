"""The plugin kernel: plugin model, registry, graph, config, events, reload, watcher."""

from ._change import Change
from ._config import ConfigDocument, parse_config
from ._discovery import BUILTINS, import_unit, plugin_classes, unit_for
from ._events import EventLog, PluginEvent
from ._fingerprint import Fingerprint, Reach, reaches
from ._graph import DependencyGraph
from ._imports import IMPORT_TIMEOUT
from ._kernel import SERVERS, Kernel
from ._lifecycle import Timeouts
from ._live import Lease
from ._loop import LOOPS, loop_factory
from ._operations import PreparedReload
from ._plugin import (
    ASGIApp,
    Context,
    Message,
    MiddlewareFactory,
    MiddlewarePlugin,
    Plugin,
    PluginState,
    Probe,
    ProviderPlugin,
    Scope,
    ToolPlugin,
)
from ._reports import Degraded, HealthStatus, LoadReport, PluginInfo, ReloadReport
from ._secrets import (
    MASK,
    SecretBook,
    is_secret_key,
    mask,
    mask_log_records,
    redact,
    secret_values,
)
from ._validation import Duration, PluginConfig, parse_duration
from ._watcher import FileWatcher

__all__ = [
    "BUILTINS",
    "IMPORT_TIMEOUT",
    "LOOPS",
    "MASK",
    "SERVERS",
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
    "Message",
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
    "Scope",
    "SecretBook",
    "Timeouts",
    "ToolPlugin",
    "import_unit",
    "is_secret_key",
    "loop_factory",
    "mask",
    "mask_log_records",
    "parse_config",
    "parse_duration",
    "plugin_classes",
    "reaches",
    "redact",
    "secret_values",
    "unit_for",
]
