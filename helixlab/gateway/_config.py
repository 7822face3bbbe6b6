"""The gateway's settings: the optional top-level ``gateway:`` section of a configuration,
or the keyword options of ``kernel.serve(...)``, validated by one pydantic model.

Unknown keys are errors (a misspelt limit that silently does nothing is worse than a
refusal), reported with their line when they came from YAML::

    gateway:
      max_body_bytes: 2097152
      execute_tools: true
      max_tool_rounds: 3
      cors_origins: ["http://localhost:5173"]
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
from pydantic import ConfigDict, Field, field_validator

from ..errors import ConfigError, ConfigProblem
from ..kernel import ConfigDocument, Duration
from ._forwarded import check_allow

__all__ = ["GatewayConfig", "gateway_config"]

MIB = 1 << 20


class GatewayConfig(pydantic.BaseModel):
    """How the gateway listens and what it allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1)
    """Loopback by default: exposing a gateway is a decision, not an accident."""
    port: int = Field(default=0, ge=0, le=65535)
    """0 picks a free port; the server handle's ``url`` tells which."""
    health_detail: Literal["auth", "public", "none"] = "auth"
    """Who sees ``/health``'s per-plugin detail: ``auth`` — requests with a token the loaded
    custom-auth accepts (without custom-auth, nobody); ``public`` — everyone; ``none`` —
    nobody. Everyone else gets the status only."""
    max_body_bytes: int = Field(default=MIB, ge=1)
    """Request bodies above this are refused with 413 while they are read."""
    execute_tools: bool = False
    """Run tool plugins' tools server-side for every request (a request can also ask)."""
    max_tool_rounds: int = Field(default=5, ge=1, le=100)
    """At most this many model turns answered by server-side tools per request."""
    graceful_timeout: Duration = Field(default=5.0, gt=0)
    """On stop, how long open connections (streams) get to finish."""
    accept_request_id: bool = True
    """Answer with the client's ``x-request-id`` when it sends a well-formed one (letters,
    digits, ``._:-``, at most 128), so its logs and the gateway's agree; else a new id."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the gateway (``"*"``: any). Empty, the default: no
    CORS at all, so an ``OPTIONS`` preflight is refused and browsers block the call."""
    cors_allow_headers: tuple[str, ...] = ("*",)
    """Request headers a browser may send (``"*"``: whatever the preflight asks for)."""
    cors_max_age: int = Field(default=600, ge=0)
    """Seconds a browser may cache a preflight's answer."""
    admin_key: pydantic.SecretStr | None = None
    """Turns the admin API on (``/admin/...``, ``Authorization: Bearer KEY``); off if unset."""
    verify: bool = False
    """Canary every reload of a middleware or provider (its ``probe()``) before the swap."""
    metrics_host: str = Field(default="127.0.0.1", min_length=1)
    """Where a fleet serves ``/metrics`` for Prometheus without credentials: loopback by
    default, so that only a scraper on the host (or one you let in) reads it."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """The port of that listener (None, the default: no listener). On the gateway's own
    port ``/metrics`` answers only ``Authorization: Bearer <admin_key>``."""
    forwarded_allow_ips: tuple[str, ...] = ()
    """Reverse proxies trusted to say who the client is (IPs or CIDR networks, or ``"*"``;
    a list or one comma-separated string, as uvicorn's ``--forwarded-allow-ips``). Only a
    request from one of them has its ``forwarded_header`` read, from the right, for the
    client's real address (what per-address rate limits key on). Empty, the default: the
    headers are ignored and the client is the connection's peer."""
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    """Which header your proxy writes: ``X-Forwarded-For`` or RFC 7239 ``Forwarded``. The
    other is never read (a client could have written it)."""

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _check_proxies(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str | list | tuple):
            return check_allow(value)
        return value  # pydantic reports the wrong type


def gateway_config(
    data: GatewayConfig | ConfigDocument | Mapping[str, Any] | None = None,
    *,
    source: str = "serve()",
    lines: Mapping[tuple, int] | None = None,
    **overrides: Any,
) -> GatewayConfig:
    """A validated GatewayConfig from a parsed document, a mapping or keyword options.

    ``overrides`` (e.g. ``--port`` from the command line) win over ``data``. Every problem
    is raised at once as a :class:`~helixlab.ConfigError`, located by line when known.

    >>> gateway_config({"max_tool_rounds": 3}).max_tool_rounds
    3
    """
    if isinstance(data, GatewayConfig):
        return data.model_copy(update=overrides) if overrides else data
    if isinstance(data, ConfigDocument):
        source, lines, data = data.source, data.gateway_lines, data.gateway
    values = {**dict(data or {}), **overrides}
    if not values.get("admin_key"):
        values.pop("admin_key", None)  # an empty ${VAR:-} leaves the admin API off
    lines = lines or {}
    fields = GatewayConfig.model_fields
    problems = []
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append(
                _problem(
                    f"unknown key {key!r}.{hint} Valid keys: {', '.join(sorted(fields))}.",
                    source,
                    lines,
                    (key,),
                )
            )
    known = {key: value for key, value in values.items() if key in fields}
    try:
        config = GatewayConfig.model_validate(known)
    except pydantic.ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            got = error.get("input")
            shown = f" (got {got!r})" if isinstance(got, str | int | float) else ""
            message = error["msg"].removeprefix("Value error, ") + shown + "."
            problems.append(_problem(message, source, lines, loc))
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(problems, source)
    return config


def _problem(message: str, source: str, lines: Mapping[tuple, int], loc: tuple) -> ConfigProblem:
    line = lines.get(loc[:1]) if loc else lines.get(())
    path = ".".join(str(part) for part in ("gateway", *loc))
    return ConfigProblem(message, source, line, None, path)
