"""Fail closed: no request is served while a plugin that guards requests is not serving.

A plugin guards requests when its class says so (``required = True``: custom-auth) or the
configuration does (``required: true``). The gateway checks, for every request, that each
enabled guard is live in the generation the request leased; if one is not — it failed at
load or start, hung past its timeout, was stopped, has not started yet, or a reload that
could not restore it left it out — the request is answered 503 in the OpenAI shape, naming
the plugin and the phase, and never reaches a route. ``/health`` and ``/readyz`` say the
same (see ``_health``); the admin API stays reachable so that an operator can mend it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import GatewayError

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["Unguarded", "refusal", "unguarded"]

RETRY_AFTER = "5"  # seconds: a guard that restarts is usually back within that


@dataclass(frozen=True)
class Unguarded:
    """One guard that is not serving: its name, the phase, and (for detail) the error."""

    plugin: str
    phase: str
    why: str  # safe for anyone: state and phase only
    error: str | None = None  # the kernel's error text, for /health's detail only

    def json(self, detail: bool) -> dict[str, Any]:
        body = {"plugin": self.plugin, "phase": self.phase, "reason": self.why}
        if detail and self.error:
            body["error"] = self.error
        return body


def unguarded(kernel: Kernel, live: Mapping[str, Any]) -> list[Unguarded]:
    """The guards of ``kernel`` not serving in ``live`` (a generation's live instances)."""
    missing = []
    for name in kernel.guards():
        instance = live.get(name)
        if instance is not None and not instance.stopping:
            continue
        if instance is not None:  # a restart stopped it before its new instance starts
            missing.append(Unguarded(name, "reload", "it is restarting"))
            continue
        failure = kernel.failure(name)
        if failure is not None:
            phase, error = failure
            why = f"it failed in {phase}"
            missing.append(Unguarded(name, phase, why, error))
            continue
        try:
            state = str(kernel.state(name))
        except LookupError:  # configured required, but no plugin of that name registered
            missing.append(Unguarded(name, "load", "no plugin of that name is registered"))
            continue
        if state in ("stopping", "stopped"):
            missing.append(Unguarded(name, "stop", "it was stopped"))
        elif state == "active":  # started, and not yet swapped into this generation
            missing.append(Unguarded(name, "swap", "it is starting"))
        elif state == "initialized":  # in its start (a hung one: until its timeout)
            missing.append(Unguarded(name, "start", "it is starting"))
        else:
            missing.append(Unguarded(name, "load", "it has not started yet"))
    return missing


def refusal(missing: list[Unguarded]) -> GatewayError:
    """The 503 a request gets while ``missing`` guards are not serving."""
    first = missing[0]
    others = "".join(f"; plugin {m.plugin!r} too ({m.why}, phase {m.phase})" for m in missing[1:])
    return GatewayError(
        503,
        f"Plugin {first.plugin!r} guards this gateway and is not serving ({first.why}, phase "
        f"{first.phase}){others}: no request is served without it. GET /health says why.",
        type="server_error",
        code="guard_unavailable",
        headers={"Retry-After": RETRY_AFTER},
    )
