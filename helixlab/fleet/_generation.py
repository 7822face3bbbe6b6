"""A generation: what every worker of a fleet runs, by content, and how it came to be.

Generation g is the configuration text (the YAML, as written) and the plugin sources
(every file of the fleet's plugins directory, by relative path) the fleet serves, their
digest, and the kernel's :class:`~helixlab.kernel.Change` that made it from its parent
(``reload``, ``configure``, ``apply_config`` of a saved config file, ``define_file`` of a
saved plugin file; none for the founding generation). A worker that joins loads the
committed generation; a worker already serving prepares its change. Workers run the
generation's sources, not their own disk's: hosts whose copies of the plugins differ
still serve one version. What Redis holds is not trusted: :meth:`Generation.from_hash`
checks the change key by key (``change_from_wire``) before any signature is checked.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import FleetError
from ..kernel import Change
from ._private import mask_values
from ._wire import change_from_wire, change_to_wire

__all__ = [
    "KEEP_GENERATIONS",
    "MAX_SOURCES_BYTES",
    "SOURCES",
    "Generation",
    "configured_text",
    "parse_assignments",
    "read_sources",
    "write_sources",
]

#: Generations kept in Redis, the committed one included: a worker further behind rejoins.
KEEP_GENERATIONS = 20
#: The plugin sources a generation may carry (each generation holds them all, in Redis).
MAX_SOURCES_BYTES = 4 * 1024 * 1024
#: The directory a ``define_file`` change read from Redis is relative to: the generation's
#: sources. A worker binds it to its own copy of them before it prepares the change.
SOURCES = "."


@dataclass(frozen=True)
class Generation:
    """One generation of a fleet (stored as a Redis hash under ``gen:{number}``)."""

    number: int
    config: str  # the YAML text
    source: str  # the file it came from, for messages and line numbers
    change: Change | None = None  # what made it from its parent (None: the founding one)
    proposed_by: str = ""
    proposed_at: float = field(default_factory=time.time)
    sources: dict[str, str] = field(default_factory=dict)  # plugin files: relative path -> text
    parent: int = 0  # the committed generation it was proposed on (0: the founding one)
    sig: str = ""  # HMAC-SHA256 by the fleet key of the signed fields (see _signing)

    def signed_fields(self) -> dict[str, Any]:
        """What the signature covers: the generation's identity, its parent and content."""
        return {
            "number": self.number,
            "parent": self.parent,
            "config": self.config,
            "source": self.source,
            "change": change_to_wire(self.change) if self.change else None,
            "sources": self.sources,
        }

    def signed(self, key: bytes, fleet: str) -> Generation:
        from ._signing import sign

        return replace(self, sig=sign(key, fleet, self.signed_fields()))

    def check(self, key: bytes, fleet: str) -> None:
        """Raise FleetError unless the fleet key signed this generation."""
        from ._signing import verify

        why = verify(key, fleet, self.signed_fields(), self.sig)
        if why is not None:
            raise FleetError(
                f"Refusing fleet generation {self.number} ({self.describe()}): {why}.",
                phase="verify",
            )

    def check_commit(self, key: bytes, fleet: str, signature: str | None) -> None:
        """Raise FleetError unless ``signature`` is the fleet key's decision to commit this
        generation (its number and digest)."""
        from ._signing import verify_commit

        why = verify_commit(key, fleet, self.number, self.digest, signature)
        if why is not None:
            raise FleetError(
                f"Refusing fleet generation {self.number} ({self.describe()}): {why}.",
                phase="verify",
            )

    @property
    def digest(self) -> str:
        """sha256 of the configuration and the sources: one digest, the same code and settings."""
        h = hashlib.sha256(self.config.encode())
        for path, text in sorted(self.sources.items()):
            h.update(b"\0" + path.encode() + b"\0" + text.encode())
        return h.hexdigest()[:16]

    def describe(self) -> str:
        change = self.change
        if change is None:
            return f"load {self.source}"
        if change.kind == "reload":
            return f"reload {', '.join(map(str, change.targets))}"
        if change.kind == "configure":
            values = " ".join(f"{k}={json.dumps(v)}" for k, v in change.values.items())
            # masked here: this text goes into FleetErrors, a worker's stderr, its heartbeat
            return mask_values(f"configure {change.plugin} {values}", change.values)
        if change.kind == "define_file":
            return f"define {change_to_wire(change)['path']}"
        return f"apply {self.source}"

    def to_hash(self) -> dict[str, str]:
        return {
            "number": str(self.number),
            "config": self.config,
            "source": self.source,
            "change": json.dumps(change_to_wire(self.change)) if self.change else "",
            "proposed_by": self.proposed_by,
            "proposed_at": str(self.proposed_at),
            "sources": json.dumps(self.sources),
            "parent": str(self.parent),
            "sig": self.sig,
            "digest": self.digest,
        }

    @classmethod
    def from_hash(cls, data: Mapping[str, str], number: int | None = None) -> Generation:
        """The generation stored in ``data``; with ``number``, the one read from
        ``gen:{number}``, which must hold that generation (its number is signed, the key it
        is stored under is not): FleetError otherwise."""
        if number is not None and str(data.get("number")) != str(number):
            raise FleetError(
                f"Refusing fleet generation {number}: Redis holds generation "
                f"{data.get('number')!r} under its key (a write to Redis).",
                phase="verify",
            )
        config = data["config"]
        try:
            raw = data.get("change")
            change = change_from_wire(json.loads(raw), directory=SOURCES) if raw else None
            if change and change.kind == "apply_config" and change.document != config:
                raise ValueError("its config is not the one the change applies")
        except ValueError as exc:  # JSON's errors are ValueErrors too
            raise FleetError(
                f"Refusing fleet generation {data.get('number')}: its change is malformed "
                f"({exc}) (a write to Redis).",
                phase="verify",
            ) from None
        return cls(
            number=int(data["number"]),
            config=config,
            source=data["source"],
            change=change,
            proposed_by=data.get("proposed_by", ""),
            proposed_at=float(data.get("proposed_at") or 0),
            sources=json.loads(data.get("sources") or "{}"),
            parent=int(data["parent"]) if data.get("parent") else int(data["number"]) - 1,
            sig=data.get("sig", ""),
        )


def configured_text(text: str, plugin: str, values: Mapping[str, Any]) -> str:
    """The YAML ``text`` with ``values`` merged into ``plugins.<plugin>.config``.

    Comments are not kept (the text is re-dumped); ``${VAR}`` references already in the
    text are kept as written. The new ``values`` are stored as applied: a worker applying
    the action takes them literally, so a ``${`` in them is written ``$${`` (the config's
    literal), and a worker that joins later reads the same value, not an interpolation.
    """
    doc = yaml.safe_load(text) or {}
    entry = doc.setdefault("plugins", {}).setdefault(plugin, {}) or {}
    doc["plugins"][plugin] = entry
    entry["config"] = {**(entry.get("config") or {}), **_literal(values)}
    return yaml.safe_dump(doc, sort_keys=False)


def _literal(value: Any) -> Any:
    """``value`` with every ``${`` in its strings escaped as ``$${`` (taken literally)."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, Mapping):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_literal(v) for v in value]
    return value


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``["burst_size=5", "name=x"]`` -> ``{"burst_size": 5, "name": "x"}`` (values as YAML)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {pair!r}")
        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return values


def read_sources(directory: str | Path, limit: int = MAX_SOURCES_BYTES) -> dict[str, str]:
    """Every ``.py`` file of a plugins directory (as discovery sees it), by relative path.

    Raises FleetError past ``limit`` bytes: every generation carries them all to every
    worker through Redis, so a virtualenv or vendored packages left in the directory
    would fill Redis (and slow every reload) instead of serving.
    """
    root = Path(directory).resolve()
    paths = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        hidden = any(part.startswith((".", "_")) for part in rel.parts[:-1])
        if hidden or rel.parts[0].startswith((".", "_")):  # as discovery skips them
            continue
        paths[rel.as_posix()] = path
    sizes = {rel: path.stat().st_size for rel, path in paths.items()}
    if sum(sizes.values()) > limit:
        biggest = sorted(sizes, key=sizes.__getitem__, reverse=True)[:3]
        raise FleetError(
            f"The plugins directory {str(root)!r} holds more than {limit // 1024} KiB of "
            f"Python (biggest: {', '.join(biggest)}); a fleet sends all of it to every "
            f"worker with each generation. Keep only plugin code there: virtualenvs and "
            f"vendored packages belong elsewhere (installed, or in a directory whose "
            f"name starts with '.' or '_')."
        )
    return {rel: path.read_text(encoding="utf-8") for rel, path in paths.items()}


def write_sources(directory: str | Path, sources: Mapping[str, str]) -> None:
    """Materialise ``sources`` under ``directory`` (a worker's own copy of the plugins)."""
    root = Path(directory)
    for rel, text in sources.items():
        target = root / rel
        if not target.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"plugin source path {rel!r} leaves the plugins directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
