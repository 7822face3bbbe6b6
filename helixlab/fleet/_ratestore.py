"""rate-limiter's buckets in Redis: exact across every worker and host of a fleet.

One Lua script per request refills and takes a token atomically, with Redis's own clock
(``TIME``), so workers on different hosts share one bucket per client, keyed by the
same client identity as the in-process store. 100 requests per minute across 4 workers
admits 100 plus the burst, not 400.

Redis holds at most ``max_clients`` buckets: a bucket expires when it is full again (a
missing bucket and a full one are the same), and past ``max_clients`` the script drops the
buckets nearest to full (what they lose is the least), listed in one sorted set by the
time each is full again. A client rotating its addresses cannot grow Redis. (The script
deletes keys it finds in that set: a single Redis, not a cluster.)

When Redis fails, whatever the failure (cannot connect, a timeout, out of memory,
READONLY after a failover, NOPERM for an ACL user without the right), the store follows
its ``policy``: ``open`` (the default: a gateway that refuses every request because its
limiter's database is down is worse than one briefly unlimited) admits the request,
``closed`` refuses it with a 429. The health check runs the same script, so it sees the
same failures: under ``closed`` the limiter is unhealthy (``/health`` 503); under
``open`` it is :class:`~helixlab.kernel.Degraded`: ``/health`` answers 200 with status
``degraded`` and "degraded: limits not enforced", so a load balancer keeps the workers
in rotation (the requests are served, unlimited) while the operator sees why.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from ..errors import ConfigError
from ..kernel import Degraded
from ..plugins._ratelimit import Decision
from ._private import public_url
from ._redis import Keys, client

__all__ = ["POLICIES", "RedisBucketStore"]

POLICIES = ("open", "closed")

# KEYS[1] bucket, KEYS[2] the buckets by when each is full again; ARGV rate (tokens/s),
# capacity, max_clients. Returns {allowed, tokens as a string}.
TAKE = """
local rate, cap, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, ts = cap, now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
local full = math.max(0, cap - tokens) / rate
local ms = math.ceil(full * 1000) + 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ms)
redis.call('ZADD', KEYS[2], now + full, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local over = redis.call('ZCARD', KEYS[2]) - most
if over > 0 then
  local dropped = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #dropped, 2 do redis.call('DEL', dropped[i]) end
end
if redis.call('PTTL', KEYS[2]) < ms then redis.call('PEXPIRE', KEYS[2], ms) end
return {allowed, tostring(tokens)}
"""


class RedisBucketStore:
    """BucketStore's interface over Redis; ``acquire`` is async (one script call)."""

    def __init__(self, url: str, keys: Keys, config: Any, *, policy: str = "open"):
        if policy not in POLICIES:
            raise ConfigError(f"rate-limit policy {policy!r} is not one of {', '.join(POLICIES)}")
        self.url, self.keys, self.policy = url, keys, policy
        self.index = keys.prefix + "ratelimits"  # the buckets, by when each is full again
        self.requests_per_minute = config.requests_per_minute
        self.capacity = config.burst_size
        self.max_clients = config.max_clients
        self.failure: str | None = None
        self._redis: Any = None
        self._script: Any = None
        self._probe: Any = None
        self._probe_script: Any = None

    @property
    def rate(self) -> float:
        return self.requests_per_minute / 60

    def view(self) -> RedisBucketStore:
        """A store on the same Redis buckets with settings of its own (what a reload hands
        over: a rolled-back configure leaves the serving limiter's limits as they were)."""
        return copy.copy(self)

    def __deepcopy__(self, memo: dict) -> RedisBucketStore:
        return self.view()  # the buckets are in Redis: a copy shares them

    def reshape(self, requests_per_minute: float, capacity: int, max_clients: int) -> None:
        """New settings apply from the next request (each call passes rate and capacity)."""
        self.requests_per_minute, self.capacity, self.max_clients = (
            requests_per_minute,
            capacity,
            max_clients,
        )

    async def acquire(self, key: str) -> Decision:
        if self._redis is None:  # created on the loop that serves requests
            self._redis = client(self.url, timeout=1.0)
            self._script = self._redis.register_script(TAKE)
        try:
            allowed, tokens = await self._script(
                keys=[self.keys.bucket(key), self.index],
                args=[self.rate, self.capacity, self.max_clients],
            )
        except Exception as exc:  # any redis.RedisError (OOM, READONLY, NOPERM...), OSError
            self.failure = public_url(f"{exc.__class__.__name__}: {exc}")
            return self._unreachable()
        self.failure = None
        tokens = float(tokens)
        ok = bool(allowed)
        return Decision(
            allowed=ok,
            limit=self.requests_per_minute,
            remaining=int(tokens),
            reset=(self.capacity - tokens) / self.rate,
            retry_after=0.0 if ok else (1 - tokens) / self.rate,
        )

    def _unreachable(self) -> Decision:
        allowed = self.policy == "open"
        return Decision(
            allowed=allowed,
            limit=self.requests_per_minute,
            remaining=self.capacity if allowed else 0,
            reset=0.0,
            retry_after=0.0 if allowed else max(1.0, math.ceil(1 / self.rate)),
        )

    def health(self) -> Degraded | None:
        """Run the script on a probe bucket: raise (policy ``closed``) or return
        :class:`Degraded` (policy ``open``) while Redis fails, saying what the policy does.

        Runs in a worker thread (a plain health check), so it uses a client of its own.
        """
        if self._probe is None:
            self._probe = client(self.url, asyncio=False, timeout=0.5)
            self._probe_script = self._probe.register_script(TAKE)
        probe = self.keys.prefix + "ratelimit-probe"
        try:  # the same commands as a request: a NOPERM or OOM shows here, not only PING's
            self._probe_script(keys=[probe, probe + "s"], args=[1000.0, 1, 1])
            self.failure = None
        except Exception as exc:  # any redis.RedisError, OSError
            self.failure = public_url(f"{exc.__class__.__name__}: {exc}")
        if self.failure is None:
            return None
        where = f"Redis at {public_url(self.url)} failed ({self.failure}); policy {self.policy!r}"
        if self.policy == "open":
            return Degraded(
                f"degraded: limits not enforced ({where}: requests are admitted without "
                f"the shared limit)"
            )
        raise ConnectionError(f"{where}: requests are refused with 429")
