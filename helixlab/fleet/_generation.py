"""A generation: what every worker of a fleet runs, by content, and how it came to be.

Generation g is the configuration text (the YAML, as written) the fleet serves, its
digest, and the action that made it from g-1 (``load``, ``reload NAME``,
``configure NAME key=value``, ``apply`` a saved config file). A worker that joins loads
the committed generation's configuration; a worker already serving applies the action.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

__all__ = ["Generation", "configured_text", "parse_assignments"]


@dataclass(frozen=True)
class Generation:
    """One generation of a fleet (stored as a Redis hash under ``gen:{number}``)."""

    number: int
    config: str  # the YAML text
    source: str  # the file it came from, for messages and line numbers
    action: dict[str, Any] = field(default_factory=lambda: {"kind": "load"})
    proposed_by: str = ""
    proposed_at: float = field(default_factory=time.time)

    @property
    def digest(self) -> str:
        """sha256 of the configuration text: two generations with one digest run the same."""
        return hashlib.sha256(self.config.encode()).hexdigest()[:16]

    def describe(self) -> str:
        action = self.action
        kind = action.get("kind", "load")
        if kind == "reload":
            return f"reload {action['plugin']}"
        if kind == "configure":
            values = " ".join(f"{k}={json.dumps(v)}" for k, v in action["values"].items())
            return f"configure {action['plugin']} {values}"
        if kind == "apply":
            return f"apply {self.source}"
        return f"load {self.source}"

    def to_hash(self) -> dict[str, str]:
        data = asdict(self)
        data["action"] = json.dumps(self.action)
        data["digest"] = self.digest
        return {key: str(value) for key, value in data.items()}

    @classmethod
    def from_hash(cls, data: Mapping[str, str]) -> Generation:
        return cls(
            number=int(data["number"]),
            config=data["config"],
            source=data["source"],
            action=json.loads(data.get("action") or '{"kind": "load"}'),
            proposed_by=data.get("proposed_by", ""),
            proposed_at=float(data.get("proposed_at") or 0),
        )


def configured_text(text: str, plugin: str, values: Mapping[str, Any]) -> str:
    """The YAML ``text`` with ``values`` merged into ``plugins.<plugin>.config``.

    Comments are not kept (the text is re-dumped); ``${VAR}`` references are, as written.
    """
    doc = yaml.safe_load(text) or {}
    entry = doc.setdefault("plugins", {}).setdefault(plugin, {}) or {}
    doc["plugins"][plugin] = entry
    entry["config"] = {**(entry.get("config") or {}), **values}
    return yaml.safe_dump(doc, sort_keys=False)


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``["burst_size=5", "name=x"]`` -> ``{"burst_size": 5, "name": "x"}`` (values as YAML)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {pair!r}")
        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return values
