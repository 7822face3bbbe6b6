"""Every exception helixlab raises, in one place.

The tree::

    HelixError
    ├── ConfigError                  YAML or config validation; .problems lists them all
    ├── DependencyError              the graph is not loadable; .problems, .plugins
    │   ├── MissingDependencyError
    │   ├── DisabledDependencyError
    │   ├── VersionConflictError
    │   ├── CycleError               .cycle = ["a", "b", "a"]
    │   └── UndeclaredDependencyError    ctx.get() of a plugin not declared
    ├── RegistryError                duplicate names, unknown plugins, bad plugin classes
    │   └── PluginNotFoundError      also a LookupError
    ├── PluginError                  a plugin failed in a phase; .plugin, .phase
    │   ├── PluginTimeoutError       ...by not finishing in time
    │   └── ReloadError              a reload was refused or rolled back; .report
    ├── KernelClosedError            the kernel was closed
    ├── FleetError                   a fleet could not start, or refused a generation;
    │   │                            .worker, .plugin, .phase (of the first failure)
    │   └── FleetRedisError          the fleet's Redis cannot be reached or refused a
    │                                command (OOM, READONLY, NOPERM); .url (no password)
    ├── UpstreamError                a provider's LLM API failed; .status, .http_status
    ├── CheckFailed                  a lab self-check found something missing
    ├── GradingError                 `helixlab grade` cannot grade (bad lab, checks, files)
    └── MissingExtraError            an optional part needs an extra not installed; also an
                                     ImportError; .extra, .module

    KeyboardInterrupt
    └── ReloadInterrupted            the caller pressed interrupt during a change of the
                                     live set: rolled back (or finished after its swap); .report

Messages are one sentence that quotes the subject and states the rule; detail
(file:line, the cycle path, the choices) follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._reprs import HtmlRepr

__all__ = [
    "CheckFailed",
    "ConfigError",
    "ConfigProblem",
    "CycleError",
    "DependencyError",
    "DisabledDependencyError",
    "FleetError",
    "FleetRedisError",
    "GradingError",
    "HelixError",
    "KernelClosedError",
    "MissingDependencyError",
    "MissingExtraError",
    "PluginError",
    "PluginNotFoundError",
    "PluginTimeoutError",
    "RegistryError",
    "ReloadError",
    "ReloadInterrupted",
    "UndeclaredDependencyError",
    "UpstreamError",
    "VersionConflictError",
]


class HelixError(HtmlRepr, Exception):
    """Base class of every helixlab error."""


# -- configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration: where it is and what is wrong."""

    message: str
    source: str = "<config>"
    line: int | None = None
    plugin: str | None = None
    path: str = ""
    kind: str = ""  # "missing" for a required key not set: the plugin can wait for it

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        subject = ": ".join(part for part in (self.plugin, self.path) if part)
        return f"{where}: {subject}: {self.message}" if subject else f"{where}: {self.message}"


class ConfigError(HelixError):
    """The configuration is invalid; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: Sequence[ConfigProblem] | str, source: str = "<config>"):
        if isinstance(problems, str):
            problems = [ConfigProblem(problems, source=source)]
        self.problems: list[ConfigProblem] = list(problems)
        self.source = source
        n = len(self.problems)
        if n == 1:
            msg = f"Invalid configuration: {self.problems[0]}"
        else:
            lines = "\n".join(f"  {p}" for p in self.problems)
            msg = f"Invalid configuration: {n} problems in {source}:\n{lines}"
        super().__init__(msg)


# -- dependency graph --------------------------------------------------------------


class DependencyError(HelixError):
    """The dependency graph cannot be loaded as declared.

    ``problems`` holds one error per problem (each naming its plugins); ``plugins`` is
    every plugin involved.
    """

    def __init__(
        self,
        message: str,
        *,
        plugins: Iterable[str] = (),
        problems: Sequence[DependencyError] | None = None,
    ):
        super().__init__(message)
        self.problems: list[DependencyError] = list(problems) if problems else [self]
        seen: dict[str, None] = {}
        for p in self.problems:
            for name in p.plugins if p is not self else plugins:
                seen.setdefault(name)
        self.plugins: tuple[str, ...] = tuple(seen)

    @classmethod
    def combine(cls, problems: Sequence[DependencyError]) -> DependencyError:
        """One error for several problems, of the most specific class they share."""
        if len(problems) == 1:
            return problems[0]
        kinds = {type(p) for p in problems}
        kind = kinds.pop() if len(kinds) == 1 else DependencyError
        body = "\n".join(f"  - {p}" for p in problems)
        err = DependencyError.__new__(kind)
        DependencyError.__init__(
            err, f"{len(problems)} dependency problems:\n{body}", problems=problems
        )
        if isinstance(err, CycleError):
            err.cycle = problems[0].cycle  # type: ignore[attr-defined]
        return err


class MissingDependencyError(DependencyError):
    """A plugin depends on a plugin that is not registered."""


class DisabledDependencyError(DependencyError):
    """A plugin depends on a plugin that is disabled in the configuration."""


class VersionConflictError(DependencyError):
    """A dependency's version does not satisfy the declared specifier."""


class CycleError(DependencyError):
    """The dependencies form a cycle; ``cycle`` is its path, first name repeated last."""

    def __init__(self, cycle: Sequence[str]):
        self.cycle: list[str] = list(cycle)
        super().__init__(
            f"Dependency cycle detected: {' -> '.join(self.cycle)}.", plugins=self.cycle[:-1]
        )


class UndeclaredDependencyError(DependencyError):
    """A plugin asked its context for a plugin it did not declare as a dependency."""


# -- registry ----------------------------------------------------------------------


class RegistryError(HelixError):
    """A registration was refused: duplicate name, bad plugin class, plugin still needed."""


class PluginNotFoundError(RegistryError, LookupError):
    """No plugin of that name is registered (or loaded, where that is what was asked)."""

    def __init__(self, name: str, known: Iterable[str] = (), what: str = "registered"):
        self.name = name
        known = sorted(known)
        choices = f" Known plugins: {', '.join(known)}." if known else " No plugins are known."
        super().__init__(f"No plugin named {name!r} is {what}.{choices}")

    def __str__(self) -> str:  # LookupError would otherwise quote the message
        return self.args[0]


# -- lifecycle ---------------------------------------------------------------------


class PluginError(HelixError):
    """A plugin failed in one phase of its lifecycle (init, start, stop, health, ...)."""

    def __init__(
        self,
        plugin: str,
        phase: str,
        message: str | None = None,
        *,
        cause: BaseException | None = None,
        version: str | None = None,
    ):
        self.plugin = plugin
        self.phase = phase
        self.version = version
        self.cause = cause
        if message is None:
            label = f"{plugin!r}" if version is None else f"{plugin!r} {version}"
            message = f"Plugin {label} failed in {phase}: {describe(cause)}"
        super().__init__(message)


class PluginTimeoutError(PluginError):
    """A lifecycle phase did not finish within its timeout."""


class ReloadError(PluginError):
    """A reload was refused before it began, or failed and was rolled back.

    The old versions keep serving. ``report`` is the ReloadReport of the attempt.
    """

    def __init__(
        self,
        plugin: str,
        phase: str,
        message: str | None = None,
        *,
        cause: BaseException | None = None,
        version: str | None = None,
        report: Any = None,
    ):
        super().__init__(plugin, phase, message, cause=cause, version=version)
        self.report = report


class ReloadInterrupted(KeyboardInterrupt):
    """The caller interrupted a reload (Jupyter's interrupt button), which then ended cleanly.

    Still a KeyboardInterrupt (a script stops, a notebook skips the queued cells), but its
    message says how the reload ended, in one line: ``rolled_back`` (the old versions keep
    serving) or finished after its swap (the new ones serve). ``report`` is the ReloadReport.
    """

    def __init__(self, message: str, *, rolled_back: bool, report: Any = None):
        super().__init__(message)
        self.rolled_back = rolled_back
        self.report = report


class KernelClosedError(HelixError):
    """The kernel was closed; create a new one."""


class FleetError(HelixError):
    """A fleet could not start, or a fleet reload was rolled back on every worker.

    ``worker``, ``plugin`` and ``phase`` name the first failure (None when the fleet
    itself failed: no Redis, a deadline); ``report`` is the fleet's report, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        worker: str | None = None,
        plugin: str | None = None,
        phase: str | None = None,
        report: Any = None,
    ):
        super().__init__(message)
        self.worker, self.plugin, self.phase, self.report = worker, plugin, phase, report


class FleetRedisError(FleetError):
    """The fleet's Redis cannot be reached, or refused a command (out of memory, a
    read-only replica after a failover, an ACL user without the permission).

    ``url`` is the Redis URL with its password masked; the admin API answers 503 with
    code ``fleet_redis_unavailable``, ``helixlab fleet`` exits 3.
    """

    def __init__(self, message: str, *, url: str = ""):
        super().__init__(message)
        self.url = url


# -- requests ----------------------------------------------------------------------

# Upstream statuses that are the client's own doing and mean the same through the gateway.
_PASS_THROUGH = {400, 404, 408, 409, 413, 415, 422, 429}


class UpstreamError(HelixError):
    """The upstream API answered with an error, or could not be reached.

    ``status`` is the upstream's HTTP error status (None when no usable response came:
    timeout, connection failure, a malformed body or a stream broken midway). ``error`` is
    the OpenAI error object (``message``, ``type``, ``param``, ``code``), taken from the
    upstream's body when it sent one.

    ``http_status`` is what a gateway should answer: client errors pass through; the
    upstream refusing *the gateway's* credentials (401/403) or failing (5xx) is a 502; no
    answer in time is a 504.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        error: dict[str, Any] | None = None,
        retry_after: float | None = None,
        provider: str = "custom-provider",
        attempts: int = 1,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.provider = provider
        self.attempts = attempts
        body = dict(error or {})
        body.setdefault("message", message)
        body.setdefault("type", _default_type(status))
        body.setdefault("param", None)
        body.setdefault("code", None)
        self.error = body

    @property
    def http_status(self) -> int:
        """The status a gateway should answer the client with."""
        if self.status is None:
            return 504 if self.error.get("code") == "upstream_timeout" else 502
        if self.status in _PASS_THROUGH:
            return self.status
        return 502

    def to_openai(self) -> dict[str, Any]:
        """The response body: ``{"error": {...}}``."""
        return {"error": dict(self.error)}

    def __repr__(self) -> str:
        return f"UpstreamError({str(self)!r}, status={self.status!r})"


def _default_type(status: int | None) -> str:
    if status == 429:
        return "rate_limit_error"
    if status is not None and 400 <= status < 500:
        return "invalid_request_error"
    return "upstream_error"


class CheckFailed(HelixError):
    """A lab self-check found something still missing (the report lists each ✗)."""


class GradingError(HelixError):
    """Grading cannot go on: an unknown lab, a bad hidden check, or helixlab's files changed."""


class MissingExtraError(HelixError, ImportError):
    """A part of helixlab needs an extra that is not installed; the message is one line
    ending in the command that installs it (``helixlab/_extras.py`` raises it)."""

    def __init__(self, what: str, extra: str, module: str):
        super().__init__(
            f"{what} needs the {extra} extra ({module} not installed): "
            f"pip install 'helixlab[{extra}]'"
        )
        self.what, self.extra, self.module = what, extra, module
        self.name = module  # ImportError's attribute: the module(s) not found


def describe(exc: BaseException | None) -> str:
    """``Type: message`` of an exception, as a user reads it in one line."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, HelixError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
