"""A worker's membership of its fleet: a heartbeat lease.

The heartbeat is a key with a TTL (``worker:{id}``, holding the worker's status), renewed
by a script that refuses to renew a key that lapsed: a worker paused past its lease has
been counted out of the quorum, so whatever it prepared under that lease is void (it
aborts it and converges on the committed generation instead).
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["HEARTBEAT_TTL", "Lease"]

HEARTBEAT_TTL = 3.0  # seconds a worker stays in the quorum without a heartbeat

# KEYS: the worker's key; ARGV: info, ttl ms, new. Renews the lease only while it holds
# (0: it lapsed, the worker was counted out); ``new`` takes a fresh one.
BEAT = """
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: the worker's key, gen:{id}; ARGV: info, ttl ms, the signature prepared. Before a
# commit: the lease renewed only if it held, and the generation still the one prepared.
FENCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'lapsed' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('HGET', KEYS[2], 'sig') ~= ARGV[3] then return 'changed' end
return 'ok'
"""

_TTL_MS = int(HEARTBEAT_TTL * 1000)


class Lease:
    """The heartbeat lease under key ``key``; ``number`` counts the leases taken (each
    lapse starts a new one: what was prepared under an older number is void)."""

    def __init__(self, r: Any, key: str):
        self.r, self.key = r, key
        self.number = 0
        self._renewed = 0.0  # monotonic time of the last renewal

    def _lapsed(self) -> bool:
        return time.monotonic() - self._renewed > HEARTBEAT_TTL

    async def renew(self, info: dict[str, Any], new: bool = False) -> bool:
        """Renew the lease with ``info`` as the worker's status; False when it had lapsed
        (Redis lost it, or this process was paused past it): a new lease is taken then.
        ``new``: take a fresh one (joining)."""
        text = json.dumps(info)
        held = await self.r.eval(BEAT, 1, self.key, text, _TTL_MS, "1" if new else "0")
        if not held or self._lapsed():
            if not new:
                self.number += 1
                await self.r.eval(BEAT, 1, self.key, text, _TTL_MS, "1")
            held = new
        self._renewed = time.monotonic()
        return bool(held)

    async def fence(
        self, info: dict[str, Any], number: int, generation_key: str, sig: str
    ) -> str | None:
        """Why a commit prepared under lease ``number`` must not happen (None: it may): the
        lease renewed and the generation's signature read back in one script."""
        held = await self.r.eval(FENCE, 2, self.key, generation_key, json.dumps(info), _TTL_MS, sig)
        if held == "changed":
            return "the generation in Redis is no longer the one prepared"
        if held != "ok" or self._lapsed():
            await self.renew(info)  # records the lapse and takes a new lease
            return "this worker's lease lapsed since it voted"
        self._renewed = time.monotonic()
        if self.number != number:
            return "this worker's lease lapsed since it voted"
        return None

    async def end(self) -> None:
        """Leave the quorum now (a clean stop), not at the TTL."""
        await self.r.delete(self.key)
