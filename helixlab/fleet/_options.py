"""The fleet's settings: the YAML's optional ``fleet:`` section, under the command line's.

.. code-block:: yaml

    fleet:
      workers: 4                  # worker processes on the one port
      redis: redis://10.0.0.5:6379  # default with workers > 1: a private redis-server
      name: gateway-eu            # several hosts with one Redis and one name: one fleet
      rate_limit_policy: open     # Redis unreachable: admit (open) or refuse (closed)
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import ConfigDict, Field

from ..errors import ConfigError, ConfigProblem
from ..kernel import ConfigDocument

__all__ = ["FleetOptions", "fleet_options"]


class FleetOptions(pydantic.BaseModel):
    """How many workers, which Redis, which fleet, and the rate limiter's Redis policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(default=1, ge=1, le=256)
    redis: str | None = None
    name: str = Field(default="helixlab", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    rate_limit_policy: Literal["open", "closed"] = "open"

    @property
    def is_fleet(self) -> bool:
        """``workers: 1`` without Redis is the single process, unchanged."""
        return self.workers != 1 or self.redis is not None


def fleet_options(doc: ConfigDocument, **overrides: Any) -> FleetOptions:
    """The document's ``fleet:`` section with ``overrides`` (command-line options, None
    meaning not given) on top; every problem raised at once with its line."""
    values = {**doc.fleet, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return FleetOptions.model_validate(values)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            key = loc[0] if loc else ""
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key {key!r}; valid keys: {', '.join(FleetOptions.model_fields)}"
            line = doc.fleet_lines.get(loc[:1]) if key in doc.fleet else None
            problems.append(ConfigProblem(message + ".", doc.source, line, None, f"fleet.{key}"))
        raise ConfigError(problems, doc.source) from None
