"""What the kernel hands back: load and reload reports, plugin rows, health results; each
``str`` is deterministic (no addresses, ids, paths or timings): what nbval compares."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._reprs import html_of
from ..errors import PluginError, describe
from ._secrets import IDENTIFIERS

__all__ = ["HealthStatus", "LoadReport", "PluginInfo", "ReloadReport"]


class _PlainRepr:
    """``repr`` and IPython's display show ``str``; HTML is the notebook layer's."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str | None:
        return html_of(self)


@dataclass(repr=False)
class LoadReport(_PlainRepr):
    """What ``load_all``/``load`` did: loaded in order, failed (with the error), skipped (why)."""

    order: list[str] = field(default_factory=list)
    failed: dict[str, PluginError] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # failed: the cause, secrets masked

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def __iter__(self) -> Iterator[str]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):  # `kernel.load_all() == ["a", "b"]` reads naturally
            return self.order == other
        if isinstance(other, LoadReport):
            return (self.order, self.skipped) == (other.order, other.skipped) and set(
                self.failed
            ) == set(other.failed)
        return NotImplemented

    def __str__(self) -> str:
        lines = [f"loaded {len(self.order)}: {' -> '.join(self.order) or 'nothing'}"]
        for name, err in self.failed.items():
            why = self.reasons.get(name) or (describe(err.cause) if err.cause else str(err))
            lines.append(f"failed  {name} in {err.phase}: {why}")
        for name, why in self.skipped.items():
            lines.append(f"skipped {name}: {why}")
        return "\n".join(lines)


@dataclass(repr=False)
class ReloadReport(_PlainRepr):
    """What a reload did, or would have done before it was rolled back: ``order`` the
    cascade, ``versions`` name -> (old, new), ``timings`` seconds per step (not in ``str``)."""

    targets: list[str] = field(default_factory=list, metadata=IDENTIFIERS)
    order: list[str] = field(default_factory=list, metadata=IDENTIFIERS)
    started: list[str] = field(default_factory=list, metadata=IDENTIFIERS)
    stopped: list[str] = field(default_factory=list, metadata=IDENTIFIERS)
    loaded: list[str] = field(default_factory=list, metadata=IDENTIFIERS)
    versions: dict[str, tuple[str, str]] = field(default_factory=dict, metadata=IDENTIFIERS)
    rolled_back: bool = False
    error: str | None = None  # free text (quotes the plugin's error): masked
    phase: str | None = None
    plugin: str | None = None
    strategy: dict[str, str] = field(default_factory=dict, metadata=IDENTIFIERS)
    timings: dict[str, float] = field(default_factory=dict, metadata=IDENTIFIERS)
    #: a redefined plugin -> the names (classes, functions, constants) whose code changed
    changes: dict[str, list[str]] = field(default_factory=dict, metadata=IDENTIFIERS)

    @property
    def ok(self) -> bool:
        return self.error is None

    def change_lines(self) -> list[str]:
        """``TokenBucket changed: reloading lab-rate-limiter``, one line per set of names."""
        grouped: dict[tuple[str, ...], list[str]] = {}
        for plugin, names in self.changes.items():
            if names:
                grouped.setdefault(tuple(names), []).append(plugin)
        return [
            f"{', '.join(names)} changed: reloading {', '.join(plugins)}"
            for names, plugins in grouped.items()
        ]

    def __str__(self) -> str:
        head = ", ".join(self.targets)
        if self.error is None and not self.order:
            if not self.loaded:
                return "no changes: the running versions stay"
            return "\n".join(
                f"loaded {name} {self.versions.get(name, ('', ''))[1]} (new)"
                for name in self.loaded
            )
        if self.error is None:  # what changed, then what it reloaded
            lines = self.change_lines()
            lines.append(f"reloaded {head}: {len(self.order)} plugin(s), dependencies first")
        else:
            state = "rolled back" if self.rolled_back else "refused"
            lines = [f"reload of {head} {state}: {self.plugin} failed in {self.phase}"]
            lines.append(f"  error: {self.error}")
        for i, name in enumerate(self.order, 1):
            old, new = self.versions.get(name, ("", ""))
            mark = " (restart)" if self.strategy.get(name) == "restart" else ""
            lines.append(f"  {i}. {name} {old if old == new else f'{old} -> {new}'}{mark}")
        for name in self.loaded:
            lines.append(f"  + {name} {self.versions.get(name, ('', ''))[1]} (loaded)")
        if self.error is not None and self.order:
            lines.append("  the old versions keep serving")
        return "\n".join(lines)


@dataclass(frozen=True, repr=False)
class HealthStatus(_PlainRepr):
    """One plugin's health check (``elapsed`` not in ``str``); ``degraded``: healthy, but
    serving in a reduced way its ``detail`` says (the check returned a :class:`Degraded`)."""

    plugin: str
    healthy: bool
    detail: str = ""
    state: str = "active"
    elapsed: float = field(default=0.0, compare=False)
    degraded: bool = False

    def __bool__(self) -> bool:
        return self.healthy

    def __str__(self) -> str:
        mark = ("degraded" if self.degraded else "healthy") if self.healthy else "unhealthy"
        return f"{self.plugin}: {mark}" + (f" ({self.detail})" if self.detail else "")


class Degraded(str):
    """A health check's answer when its plugin serves in a reduced way (the text says how):
    healthy, so ``/health`` stays 200, and says ``degraded`` with this text."""


@dataclass(frozen=True, repr=False)
class PluginInfo(_PlainRepr):
    """One row of ``kernel.info()``: what a dashboard shows of a plugin."""

    name: str
    kind: str
    version: str
    state: str
    description: str = ""
    dependencies: tuple[str, ...] = ()
    dependents: tuple[str, ...] = ()
    priority: int = 0
    enabled: bool = True
    reload_count: int = 0
    health: str = "unknown"
    config: Any = None  # redacted
    origin: str = "code"
    source: str | None = None
    error: str | None = None

    def __str__(self) -> str:
        deps = f" <- {', '.join(self.dependencies)}" if self.dependencies else ""
        err = f" [{self.error}]" if self.error else ""
        return (
            f"{self.name} {self.version} ({self.kind}) {self.state}, health {self.health}, "
            f"reloads {self.reload_count}{deps}{err}"
        )
