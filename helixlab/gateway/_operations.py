"""What an operator does to a running gateway, once, for every way of asking.

The admin API, SIGHUP, ``--watch`` and the CLI clients all end here: reload a plugin
(a plugin from a file is re-imported from disk first), configure one, re-apply the
configuration file. Each answers with an :class:`Outcome`: the reload report as text and
as fields, and the HTTP status the admin API gives it. A failed reload names the plugin
and the phase, and says the old versions still serve.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    ConfigError,
    HelixError,
    PluginError,
    PluginNotFoundError,
    RegistryError,
    ReloadError,
    describe,
)
from ..kernel import IMPORT_TIMEOUT, ReloadReport, parse_config
from ..sources import import_file

__all__ = ["Operations", "Outcome"]


@dataclass
class Outcome:
    """The answer to one operation: ``ok``, a human ``text``, ``reports`` as fields."""

    ok: bool
    text: str
    status: int = 200
    reports: list[dict[str, Any]] = field(default_factory=list)
    plugin: str | None = None
    phase: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "text": self.text,
            "plugin": self.plugin,
            "phase": self.phase,
            "reports": self.reports,
        }


def report_fields(report: ReloadReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "text": str(report),
        "targets": list(report.targets),
        "order": list(report.order),
        "loaded": list(report.loaded),
        "versions": {name: list(pair) for name, pair in report.versions.items()},
        "rolled_back": report.rolled_back,
        "plugin": report.plugin,
        "phase": report.phase,
        "error": report.error,
    }


def _done(reports: Iterable[ReloadReport | None], empty: str) -> Outcome:
    kept = [r for r in reports if r is not None]
    text = "\n".join(str(r) for r in kept) or empty
    return Outcome(True, text, reports=[report_fields(r) for r in kept])


def _failed(exc: BaseException, kernel: Any) -> Outcome:
    """A refusal as an outcome; anything but a helixlab error propagates."""
    if isinstance(exc, ReloadError):
        report = exc.report
        text = str(report) if report is not None and report.order else kernel.mask(str(exc))
        if "old versions keep serving" not in text and "unchanged" not in text:
            text += "\nthe old versions keep serving"
        reports = [report_fields(report)] if report is not None else []
        return Outcome(False, text, 409, reports, exc.plugin, exc.phase)
    if isinstance(exc, PluginNotFoundError):
        return Outcome(False, str(exc), 404, plugin=exc.name)
    if isinstance(exc, ConfigError):
        return Outcome(False, kernel.mask(str(exc)), 422, phase="config")
    if isinstance(exc, HelixError):
        return Outcome(False, kernel.mask(describe(exc)), 409)
    raise exc


class Operations:
    """The operations on one kernel; ``config_path`` is what SIGHUP re-applies."""

    def __init__(
        self,
        kernel: Any,
        config_path: str | None = None,
        plugin_dirs: Iterable[str] = (),
        *,
        import_timeout: float = IMPORT_TIMEOUT,
    ):
        self.kernel = kernel
        self.config_path = config_path
        self.plugin_dirs = set(plugin_dirs)  # discovered already
        self.import_timeout = import_timeout  # what a reload's import of plugin code may take

    async def reload(self, name: str) -> Outcome:
        """Reload ``name`` with its dependents; its code is re-read from disk first.

        A plugin from a plugins directory is re-imported from its file; one from an
        installed package (an entry point) has its module re-imported, so an editable
        install (``pip install -e .``) serves the code as saved.
        """
        try:
            entry = self.kernel.entry(name)
            report = None
            if entry.origin == "file" and entry.unit and entry.source:
                report = await self._reimport(name, Path(entry.unit), Path(entry.source))
            elif entry.origin == "entry-point":
                report = await self.kernel.areload(await self._reimport_module(name, entry.cls))
            if report is None or not (report.order or report.loaded):
                report = await self.kernel.areload(name)  # unchanged code: new instances
        except Exception as exc:
            return _failed(exc, self.kernel)
        return _done([report], "no changes")

    async def _reimport(self, name: str, root: Path, path: Path) -> ReloadReport:
        # the kernel's import path, as the file watcher's: worker threads, import_timeout,
        # and a file still stuck in its last import is refused at once, not imported again
        try:
            classes, prints = await import_file(
                self.kernel, root, path, timeout=self.import_timeout
            )
        except PluginError as exc:  # it did not finish importing within import_timeout
            message = f"Plugin {name!r} failed in import: {exc}"
            raise ReloadError(name, "import", message, cause=exc.cause) from exc
        return await self.kernel.adefine(
            classes, source=str(path), origin="file", unit=str(root), fingerprints=prints
        )

    async def _reimport_module(self, name: str, cls: type) -> type:
        def reimport() -> type:
            module = importlib.reload(sys.modules[cls.__module__])
            new = getattr(module, cls.__qualname__, None)
            if not (isinstance(new, type) and getattr(new, "name", None) == name):
                raise RegistryError(
                    f"{module.__name__} no longer defines {cls.__qualname__} named {name!r}; "
                    f"renaming a plugin is not a reload."
                )
            return new

        try:
            return await self.kernel.aimport(
                name, cls.__module__, reimport, timeout=self.import_timeout
            )
        except RegistryError as exc:
            raise ReloadError(name, "import", str(exc)) from None
        except PluginError as exc:  # it did not finish importing within import_timeout
            message = f"Plugin {name!r} failed in import: {exc}"
            raise ReloadError(name, "import", message, cause=exc.cause) from exc
        except Exception as exc:
            message = f"Could not re-import {cls.__module__}: {describe(exc)}"
            raise ReloadError(name, "import", message, cause=exc) from exc

    async def configure(self, name: str, config: Mapping[str, Any]) -> Outcome:
        """Merge ``config`` over ``name``'s and reload it (validated first)."""
        if not isinstance(config, Mapping):
            return Outcome(False, f"'config' must be a mapping, not {config!r}", 422)
        try:
            report = await self.kernel.aconfigure(name, dict(config))
        except Exception as exc:
            return _failed(exc, self.kernel)
        return _done([report], f"configured {name} (not running: applies when it loads)")

    async def reapply(self) -> Outcome:
        """Re-apply the configuration file (SIGHUP): changed plugins reload.

        A directory newly listed under ``plugin_dirs:`` is discovered first (it is not
        watched until the next start); plugins the file names for the first time start.
        """
        if self.config_path is None:
            return Outcome(False, "no configuration file to re-apply", 409)
        found = []
        try:
            doc = await asyncio.to_thread(parse_config, self.config_path)
            for directory in doc.plugin_dirs:
                if directory not in self.plugin_dirs:
                    names = await self.kernel.adiscover(directory)
                    self.plugin_dirs.add(directory)
                    found.append(f"plugins directory {directory}: {', '.join(names) or 'none'}")
            reports = await self.kernel.aapply_config(self.config_path)
            for row in self.kernel.info():  # plugins the file now names: started too
                if row.state == "registered" and row.enabled:
                    loaded = await self.kernel.aload(row.name)
                    found.append(str(loaded))
        except Exception as exc:
            return _failed(exc, self.kernel)
        outcome = _done(reports, f"{self.config_path}: no changes")
        outcome.text = "\n".join([*found, outcome.text])
        return outcome
