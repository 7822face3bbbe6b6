"""The book: a :class:`Record` per plugin (state, failure, reloads, last health), the
registry, and configurations kept for plugins not registered yet. Each transition is one
method that sets the record *and* emits its event; text a plugin produced (an error, a
health detail) is masked once, there.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PluginError, describe
from ._config import PluginSpec
from ._events import EventLog, PluginEvent
from ._lifecycle import Live
from ._plugin import PluginState
from ._registry import Registry
from ._reports import HealthStatus
from ._secrets import SecretBook, secret_values

__all__ = ["Book", "Record"]


@dataclass(slots=True)
class Record:
    state: PluginState = PluginState.REGISTERED
    error: str | None = None  # "phase: what went wrong", masked, while failed
    reloads: int = 0
    health: HealthStatus | None = None  # the last recorded check of the current instance


class Book:
    def __init__(self, events: EventLog, secrets: SecretBook):
        self.events = events
        self.secrets = secrets
        self.records: dict[str, Record] = {}
        self.pending: dict[str, PluginSpec] = {}  # configured before its class arrived
        self.looked: list[str] = []  # where discovery looked, for "no plugin named X"
        #: what the last reload or definition reloaded and started (or tried to), in order
        self.last_cascade: tuple[str, ...] = ()
        self._registry = Registry()

    @property
    def registry(self) -> Registry:
        return self._registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        self._registry = registry
        self.secrets.learn(registry.secrets)  # kept up to date entry by entry: no rescan

    def learn(self, spec: PluginSpec, cls: type | None) -> None:
        """Know the secrets of a configuration before applying it: its errors may quote them."""
        model = getattr(cls, "config_model", None)
        self.secrets.learn(secret_values(spec.config, model=model, marked=spec.secrets))

    def mask(self, text: str) -> str:
        return self.secrets.mask_text(text) if text else text

    def state(self, name: str) -> PluginState:
        return self.records[name].state if name in self.records else PluginState.REGISTERED

    def emit(
        self, kind: str, name: str, detail: str = "", error: str | None = None, version: str = ""
    ) -> PluginEvent:
        """An event whose text may quote anything (a file's error): masked here."""
        return self.note(kind, name, self.mask(detail), error and self.mask(error), version)

    def note(
        self, kind: str, name: str, detail: str = "", error: str | None = None, version: str = ""
    ) -> PluginEvent:
        """An event whose text is the kernel's own, or masked already."""
        if not version and name in self._registry:
            version = str(self._registry[name].cls.version)
        return self.events.emit(kind, name, version, detail, error)

    def _set(self, name: str, state: PluginState) -> Record:
        record = self.records.setdefault(name, Record())
        record.state = state
        return record

    def registered(self, name: str, detail: str) -> None:
        self.pending.pop(name, None)
        self._set(name, PluginState.REGISTERED)
        self.note("registered", name, detail)

    def initialized(self, name: str) -> None:
        self._set(name, PluginState.INITIALIZED)
        self.note("initialized", name)

    def started(self, name: str) -> None:
        record = self._set(name, PluginState.ACTIVE)
        record.error = record.health = None  # a new instance: not checked yet
        self.note("started", name)

    def stopping(self, live: Live) -> None:
        self._set(live.name, PluginState.STOPPING)
        self.note("stopping", live.name, version=live.version)

    def stopped(self, live: Live) -> None:
        self._set(live.name, PluginState.STOPPED)
        self.note("stopped", live.name, version=live.version)

    def failed(self, name: str, exc: PluginError) -> None:
        """``name`` is out of service: failed in ``exc.phase``."""
        record = self._set(name, PluginState.FAILED)
        record.error = self.mask(f"{exc.phase}: {describe(exc.cause) if exc.cause else exc}")
        self.note("failed", name, f"in {exc.phase}", record.error)

    def stop_failed(self, live: Live, exc: PluginError) -> None:
        """An instance's ``stop`` failed: reported; the instance is out of service anyway."""
        self.note("failed", live.name, "in stop", self.mask(describe(exc)), live.version)

    def abandoned(self, live: Live) -> None:
        """An instance that finished starting too late was stopped (the state is another's)."""
        detail = "an abandoned instance (it finished starting after its timeout or an interrupt): "
        self.note("stopped", live.name, detail + "stopped, it never served", version=live.version)

    def reloaded(self, name: str, old: str, new: str) -> None:
        record = self._set(name, PluginState.ACTIVE)
        record.reloads += 1
        record.error = record.health = None  # a new instance: not checked yet
        detail = f"{old} -> {new}" if old != new else f"{old} (new instance)"
        self.note("reloaded", name, detail, version=new)

    def checked(self, name: str, status: HealthStatus) -> None:
        """A health check's result, recorded; a change of healthy/unhealthy is an event."""
        record = self.records.get(name)
        if record is None:
            return
        before, record.health = record.health, status  # stored first: subscribers read it
        if before is None or before.healthy != status.healthy:
            mark = "healthy" if status.healthy else "unhealthy"
            self.note("health_changed", name, mark, status.detail or None)

    def forgotten(self, name: str) -> None:
        self.records.pop(name, None)
        self.note("unregistered", name)
