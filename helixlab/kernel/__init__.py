"""The plugin kernel: plugin model, registry, graph, config, lifecycle, events, hot reload."""

from ._builtins import BUILTINS
from ._change import Change
from ._config import ConfigDocument, parse_config
from ._events import EventLog, PluginEvent
from ._fingerprint import Fingerprint, value_digest
from ._graph import DependencyGraph
from ._kernel import LAYERS, Kernel
from ._lifecycle import Timeouts
from ._live import Lease
from ._loop import LOOPS, loop_factory
from ._operations import PreparedReload
from ._plugin import (
    ASGIApp,
    Context,
    Duration,
    Message,
    MiddlewareFactory,
    MiddlewarePlugin,
    Plugin,
    PluginConfig,
    PluginState,
    Probe,
    ProviderPlugin,
    Scope,
    ToolPlugin,
    parse_duration,
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
from ._workers import IMPORT_TIMEOUT

__all__ = [
    "BUILTINS",
    "IMPORT_TIMEOUT",
    "LAYERS",
    "LOOPS",
    "MASK",
    "ASGIApp",
    "Change",
    "ConfigDocument",
    "Context",
    "Degraded",
    "DependencyGraph",
    "Duration",
    "EventLog",
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
    "ReloadReport",
    "Scope",
    "SecretBook",
    "Timeouts",
    "ToolPlugin",
    "is_secret_key",
    "loop_factory",
    "mask",
    "mask_log_records",
    "parse_config",
    "parse_duration",
    "redact",
    "secret_values",
    "value_digest",
]
