"""The admin API on a fleet's worker: every operation is a generation of the whole fleet.

``POST /admin/reload`` (and ``helixlab reload`` against any worker) must not reload one
worker out of N: that is how a fleet ends up serving two versions. On a worker, the
single-server :class:`~helixlab.gateway._operations.Operations` is replaced by this one,
which proposes the change to the fleet and answers with the fleet's report, or with the
fleet's one error naming the worker, the plugin and the phase.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FleetError
from ..gateway._operations import Operations, Outcome
from ._coordinator import FleetReport, propose
from ._redis import Keys, client

__all__ = ["FleetOperations"]


def _fields(report: FleetReport) -> dict[str, Any]:
    return {
        "ok": report.outcome == "commit",
        "text": str(report),
        "generation": report.generation,
        "action": report.action,
        "outcome": report.outcome,
        "votes": report.votes,
        "swapped": report.swapped,
    }


class FleetOperations(Operations):
    """reload / configure / reapply, each proposed to every worker as one generation."""

    def __init__(self, kernel: Any, redis_url: str, keys: Keys, config_path: str):
        super().__init__(kernel, config_path)
        self.redis_url, self.keys = redis_url, keys

    async def reload(self, name: str) -> Outcome:
        return await self._propose({"kind": "reload", "plugin": name})

    async def configure(self, name: str, config: Mapping[str, Any]) -> Outcome:
        if not isinstance(config, Mapping):
            return Outcome(False, f"'config' must be a mapping, not {config!r}", 422)
        return await self._propose({"kind": "configure", "plugin": name, "values": dict(config)})

    async def reapply(self) -> Outcome:
        text = await asyncio.to_thread(Path(self.config_path).read_text, encoding="utf-8")
        return await self._propose({"kind": "apply"}, config=text, source=self.config_path)

    async def _propose(self, action: dict[str, Any], **content: Any) -> Outcome:
        r = client(self.redis_url)
        try:
            report = await propose(r, self.keys, action, **content)
        except FleetError as exc:
            reports = [_fields(exc.report)] if exc.report is not None else []
            text = self.kernel._redact(str(exc))
            return Outcome(False, text, 409, reports, exc.plugin, exc.phase)
        finally:
            await r.aclose()
        return Outcome(True, str(report), reports=[_fields(report)])
