"""The admin API on a fleet's worker: every operation is a generation of the whole fleet.

``POST /admin/reload`` (and ``helixlab reload`` against any worker) must not reload one
worker out of N: that is how a fleet ends up serving two versions. On a worker, the
single-server :class:`~helixlab.gateway._operations.Operations` is replaced by this one,
which proposes the change to the fleet and answers with the fleet's report, or with the
fleet's one error naming the worker, the plugin and the phase. A failure of the fleet's
Redis (down, out of memory, read-only, no permission) answers 503 with the documented
:class:`~helixlab.errors.FleetRedisError` message (code ``fleet_redis_unavailable``);
secret settings of a configure (``api_key``...) show as ``***`` in every answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FleetError, FleetRedisError
from ..gateway._operations import Operations, Outcome
from ..kernel import Change
from ._coordinator import FleetReport, propose
from ._private import mask_values
from ._redis import Keys, connected

__all__ = ["FleetOperations"]


def _fields(report: FleetReport, values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ok": report.outcome == "commit",
        "text": mask_values(str(report), values),
        "generation": report.generation,
        "action": mask_values(report.action, values),
        "outcome": report.outcome,
        "votes": {
            worker: {**vote, "error": mask_values(str(vote["error"]), values)}
            if vote.get("error")
            else vote
            for worker, vote in report.votes.items()
        },
        "swapped": report.swapped,
    }


class FleetOperations(Operations):
    """reload / configure / reapply, each proposed to every worker as one generation."""

    def __init__(self, kernel: Any, redis_url: str, keys: Keys, config_path: str):
        super().__init__(kernel, config_path)
        self.redis_url, self.keys, self.config_file = redis_url, keys, config_path

    async def reload(self, name: str) -> Outcome:
        return await self._propose(Change.reload(name))

    async def configure(self, name: str, config: Mapping[str, Any]) -> Outcome:
        if not isinstance(config, Mapping):
            return Outcome(False, f"'config' must be a mapping, not {config!r}", 422)
        return await self._propose(Change.configure(name, config))

    async def reapply(self) -> Outcome:
        text = await asyncio.to_thread(Path(self.config_file).read_text, encoding="utf-8")
        return await self._propose(Change.apply_config(text, source=self.config_file))

    async def _propose(self, change: Change) -> Outcome:
        values = change.values
        try:
            async with connected(self.redis_url) as r:
                report = await propose(r, self.keys, change)
        except FleetRedisError as exc:
            return Outcome(False, str(exc), 503, phase="redis")
        except FleetError as exc:
            reports = [_fields(exc.report, values)] if exc.report is not None else []
            text = mask_values(self.kernel.mask(str(exc)), values)
            return Outcome(False, text, 409, reports, exc.plugin, exc.phase)
        except ValueError as exc:  # values JSON cannot carry
            return Outcome(False, mask_values(str(exc), values), 422)
        return Outcome(True, mask_values(str(report), values), reports=[_fields(report, values)])
