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
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FleetError
from ..gateway._operations import Operations, Outcome
from ._coordinator import FleetReport, propose
from ._private import mask_values, redis_failure
from ._redis import Keys, client

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
        return await self._propose({"kind": "reload", "plugin": name})

    async def configure(self, name: str, config: Mapping[str, Any]) -> Outcome:
        if not isinstance(config, Mapping):
            return Outcome(False, f"'config' must be a mapping, not {config!r}", 422)
        return await self._propose({"kind": "configure", "plugin": name, "values": dict(config)})

    async def reapply(self) -> Outcome:
        text = await asyncio.to_thread(Path(self.config_file).read_text, encoding="utf-8")
        return await self._propose({"kind": "apply"}, config=text, source=self.config_file)

    async def _propose(self, action: dict[str, Any], **content: Any) -> Outcome:
        values = action.get("values") or {}
        r = client(self.redis_url)
        try:
            report = await propose(r, self.keys, action, **content)
        except FleetError as exc:
            reports = [_fields(exc.report, values)] if exc.report is not None else []
            text = mask_values(self.kernel.mask(str(exc)), values)
            return Outcome(False, text, 409, reports, exc.plugin, exc.phase)
        except Exception as exc:
            failure = redis_failure(exc, self.redis_url)
            if failure is None:
                raise
            return Outcome(False, str(failure), 503, phase="redis")
        finally:
            with contextlib.suppress(Exception):  # a client that never connected
                await r.aclose()
        return Outcome(True, mask_values(str(report), values), reports=[_fields(report, values)])
