"""helixlab: a hot-reloadable plugin kernel for an LLM gateway, driven from Jupyter.

>>> import helixlab as hx
>>> kernel = hx.Kernel()

``%load_ext helixlab`` in a notebook registers the ``%helix`` magics.
"""

from .errors import (
    CheckFailed,
    ConfigError,
    CycleError,
    DependencyError,
    DisabledDependencyError,
    FleetError,
    GradingError,
    HelixError,
    KernelClosedError,
    MissingDependencyError,
    PluginError,
    PluginNotFoundError,
    PluginTimeoutError,
    RegistryError,
    ReloadError,
    ReloadInterrupted,
    UndeclaredDependencyError,
    UpstreamError,
    VersionConflictError,
)
from .kernel import (
    BUILTINS,
    LAYERS,
    Change,
    Context,
    DependencyGraph,
    Duration,
    HealthStatus,
    Kernel,
    Lease,
    LoadReport,
    MiddlewareFactory,
    MiddlewarePlugin,
    Plugin,
    PluginConfig,
    PluginEvent,
    PluginInfo,
    PluginState,
    PreparedReload,
    Probe,
    ProviderPlugin,
    ReloadReport,
    Timeouts,
    ToolPlugin,
    parse_duration,
    redact,
)
from .notebook import _html  # registers the HTML reprs of the kernel's objects
from .plugins import CATALOG
from .sources import FileWatcher

# The layers above the kernel register what they add, found by name: Kernel.serve runs the
# gateway, Kernel.discover and watch_files helixlab.sources, and configurations name the
# built-in plugins; the kernel imports none of them
LAYERS.update(serve="helixlab.gateway:serve", aserve="helixlab.gateway:aserve")
LAYERS.update(
    {f: f"helixlab.sources:{f}" for f in ("find", "define_file", "watch_files", "entry_points")}
)
BUILTINS.update(CATALOG)
del LAYERS, BUILTINS, _html, CATALOG

__version__ = "0.1.0"

__all__ = [
    "Change",
    "CheckFailed",
    "ConfigError",
    "Context",
    "CycleError",
    "DependencyError",
    "DependencyGraph",
    "DisabledDependencyError",
    "Duration",
    "FileWatcher",
    "FleetError",
    "GradingError",
    "HealthStatus",
    "HelixError",
    "Kernel",
    "KernelClosedError",
    "Lease",
    "LoadReport",
    "MiddlewareFactory",
    "MiddlewarePlugin",
    "MissingDependencyError",
    "Plugin",
    "PluginConfig",
    "PluginError",
    "PluginEvent",
    "PluginInfo",
    "PluginNotFoundError",
    "PluginState",
    "PluginTimeoutError",
    "PreparedReload",
    "Probe",
    "ProviderPlugin",
    "RegistryError",
    "ReloadError",
    "ReloadInterrupted",
    "ReloadReport",
    "Timeouts",
    "ToolPlugin",
    "UndeclaredDependencyError",
    "UpstreamError",
    "VersionConflictError",
    "__version__",
    "parse_duration",
    "redact",
]


def load_ipython_extension(shell) -> None:
    """``%load_ext helixlab``: register the magics and give the notebook a kernel."""
    from .notebook import load_ipython_extension as load

    load(shell)


def unload_ipython_extension(shell) -> None:
    """``%unload_ext helixlab``: stop the notebook's kernel cleanly."""
    from .notebook import unload_ipython_extension as unload

    unload(shell)
