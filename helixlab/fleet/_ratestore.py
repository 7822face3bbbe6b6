"""rate-limiter's buckets in Redis: exact across every worker and host of a fleet.

One Lua script per request refills and takes a token atomically, with Redis's own clock
(``TIME``), so workers on different hosts share one bucket per client, keyed by the
same client identity as the in-process store. 100 requests per minute across 4 workers
admits 100 plus the burst, not 400.

When Redis cannot be reached, the store follows its ``policy``: ``open`` (the default:
a gateway that refuses every request because its limiter's database is down is worse
than one briefly unlimited) admits the request, ``closed`` refuses it with a 429. Either
way the rate-limiter's health check says so, and ``/health`` shows it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from .._extras import needs
from ..errors import ConfigError
from ..plugins._ratelimit import Decision
from ._redis import Keys, client

__all__ = ["POLICIES", "RedisBucketStore"]

POLICIES = ("open", "closed")

# KEYS[1] bucket; ARGV rate (tokens/s), capacity. Returns {allowed, tokens as a string}.
TAKE = """
local rate, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens, ts = cap, now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap / rate) * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


class RedisBucketStore:
    """BucketStore's interface over Redis; ``acquire`` is async (one script call)."""

    def __init__(self, url: str, keys: Keys, config: Any, *, policy: str = "open"):
        if policy not in POLICIES:
            raise ConfigError(f"rate-limit policy {policy!r} is not one of {', '.join(POLICIES)}")
        self.url, self.keys, self.policy = url, keys, policy
        self.requests_per_minute = config.requests_per_minute
        self.capacity = config.burst_size
        self.max_clients = config.max_clients
        self.failure: str | None = None
        self._redis: Any = None
        self._script: Any = None
        self._probe: Any = None

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
                keys=[self.keys.bucket(key)], args=[self.rate, self.capacity]
            )
        except Exception as exc:  # redis.RedisError, OSError, TimeoutError
            self.failure = f"{exc.__class__.__name__}: {exc}"
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

    def health(self) -> None:
        """Raise while Redis is unreachable, saying what the policy does meanwhile.

        Runs in a worker thread (a plain health check), so it pings with a client of its own.
        """
        with needs("fleet", "the fleet's rate limit store"):
            import redis

        if self._probe is None:
            self._probe = client(self.url, asyncio=False, timeout=0.5)
        try:
            self._probe.ping()
            self.failure = None
        except (redis.RedisError, OSError) as exc:
            self.failure = f"{exc.__class__.__name__}: {exc}"
        if self.failure is not None:
            does = (
                "requests are admitted without a shared limit"
                if self.policy == "open"
                else "requests are refused with 429"
            )
            raise ConnectionError(
                f"Redis at {self.url} unreachable ({self.failure}); policy {self.policy!r}: {does}"
            )
