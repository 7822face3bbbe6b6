"""Pin the public surface: ``helixlab.__all__`` is exactly what the package exports."""

from __future__ import annotations

import types

import helixlab

#: IPython's extension protocol looks these up by name; they are not API to import.
HOOKS = {"load_ipython_extension", "unload_ipython_extension"}


def test_all_imports_are_exported():
    public = sorted(
        name
        for name, value in vars(helixlab).items()
        if (not name.startswith("_") or name == "__version__")
        and name not in HOOKS
        and not isinstance(value, types.ModuleType)
    )
    assert helixlab.__all__ == public


def test_the_public_names_are_pinned():
    assert helixlab.__all__ == [
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


def test_every_error_is_a_helix_error():
    errors = [getattr(helixlab, n) for n in helixlab.__all__ if n.endswith(("Error", "Failed"))]
    assert all(issubclass(e, helixlab.HelixError) for e in errors)
